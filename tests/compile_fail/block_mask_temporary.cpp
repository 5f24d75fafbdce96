// Must not compile: mask() of a temporary block_mask views plans that are freed at the end of the
// declaration, before the mask is used. Keep the block_mask in a variable and take its mask from there.
//   g++ 12:    error: static assertion failed: salt::block_mask::mask() views the block_mask's plans: ...
//   clang 14:  error: static_assert failed due to requirement ... "salt::block_mask::mask() views ...
// expect: views the block_mask's plans: call it on a block_mask held in a variable, not on a temporary
#include <salt/attention.hpp>
#include <salt/block_mask.hpp>

int main() {
  const auto mask = salt::block_mask<float, salt::causal<>>(salt::causal{}, {.lq = 256, .lk = 256}).mask();
  const salt::row_matrix<float> x = salt::row_matrix<float>::Zero(256, 4);
  const salt::row_matrix<float> out = salt::attention(x, x, x, mask);
  return static_cast<int>(out(0, 0));
}
