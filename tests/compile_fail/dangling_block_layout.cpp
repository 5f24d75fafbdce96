// Must not compile: block_layout views its flags, and a temporary vector is freed at the end of the
// declaration, before the mask is used. Designated initialisers still work with flags kept in a variable.
//   g++ 12:    error: static assertion failed: salt: a policy views this data (indices, ids, ...), ...
//   clang 14:  error: static_assert failed due to requirement ... "salt: a policy views this data ...
// expect: salt: a policy views this data .indices, ids, lengths, flags, slopes, layout tables., which must outlive the call: keep it in a variable, not a temporary
#include <salt/attention.hpp>

#include <cstdint>
#include <vector>

int main() {
  const auto mask = salt::block_layout{.block = 4, .heads = 1, .blocks = 2, .layout = std::vector<std::uint8_t>(4, 1)};
  const salt::row_matrix<float> x = salt::row_matrix<float>::Zero(8, 4);
  const salt::row_matrix<float> out = salt::attention(x, x, x, mask);
  return static_cast<int>(out(0, 0));
}
