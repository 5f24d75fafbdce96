// Must not compile: mask() of a temporary block_layout_csr views lists that are freed at the end of the
// declaration, before the mask is used. Keep the block_layout_csr in a variable.
//   g++ 12:    error: static assertion failed: salt::block_layout_csr::mask() returns a view of the lists, ...
//   clang 14:  error: static_assert failed due to requirement ... "salt::block_layout_csr::mask() returns ...
// expect: returns a view of the lists, which must outlive the call: keep the block_layout_csr in a variable
#include <salt/attention.hpp>

#include <cstdint>
#include <vector>

int main() {
  const std::vector<std::uint8_t> flags(4, 1);
  const auto mask = salt::block_layout_csr(salt::block_layout{.block = 4, .heads = 1, .blocks = 2, .layout = flags}).mask();
  const salt::row_matrix<float> x = salt::row_matrix<float>::Zero(8, 4);
  const salt::row_matrix<float> out = salt::attention(x, x, x, mask);
  return static_cast<int>(out(0, 0));
}
