// Must not compile: global_tokens views its indices, and a temporary vector is freed at the end of the
// declaration, before the mask is used (a use-after-free under AddressSanitizer when it compiled). An
// lvalue vector or an explicit std::span binds.
//   g++ 12:    error: static assertion failed: salt: a policy views this data (indices, ids, ...), ...
//   clang 14:  error: static_assert failed due to requirement ... "salt: a policy views this data ...
// expect: salt: a policy views this data .indices, ids, lengths, flags, slopes, layout tables., which must outlive the call: keep it in a variable, not a temporary
#include <salt/attention.hpp>

#include <vector>

int main() {
  const auto mask = salt::global_tokens{std::vector<salt::index>{0, 1}};
  const salt::row_matrix<float> x = salt::row_matrix<float>::Zero(8, 4);
  const salt::row_matrix<float> out = salt::attention(x, x, x, mask);
  return static_cast<int>(out(0, 0));
}
