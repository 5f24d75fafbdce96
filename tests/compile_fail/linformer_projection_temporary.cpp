// Must not compile: E of a temporary linformer_projections. e() and f() are views into the projections'
// storage, which a temporary frees at the end of the statement.
// expect: salt::linformer_projections::e and ::f view the projections, which must outlive the view
#include <salt/linformer.hpp>

int main() {
  const auto e = salt::linformer_projections<float>::gaussian(4, 8, 1, salt::linformer_sharing::shared_heads, 1).e(0);
  return static_cast<int>(e(0, 0));
}
