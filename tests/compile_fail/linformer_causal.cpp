// Must not compile: Linformer has no causal form (each projected key mixes every position, future ones
// included), so salt::linformer_attention rejects salt::causal with a static_assert that says why.
// expect: salt::linformer_attention cannot be causal
#include <salt/linformer.hpp>

int main() {
  const salt::row_matrix<float> x = salt::row_matrix<float>::Zero(8, 4);
  const auto proj = salt::linformer_projections<float>::gaussian(4, 8, 1, salt::linformer_sharing::shared_heads, 1);
  const salt::row_matrix<float> out = salt::linformer_attention(x, x, x, proj, salt::causal{});
  return static_cast<int>(out(0, 0));
}
