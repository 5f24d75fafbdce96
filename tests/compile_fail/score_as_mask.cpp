// Must not compile: a score policy given where the mask goes (masks come before scores). dot_product has
// no allows(), so it is not a salt::mask_policy, and the compiler says so.
//   g++ 12:    required for the satisfaction of 'mask_policy<Mask>' [with Mask = salt::dot_product]
//              note: the required expression 'm.allows(q, k, s)' is invalid
//   clang 14:  note: because 'salt::dot_product' does not satisfy 'mask_policy'
// expect: mask_policy
#include <salt/attention.hpp>

int main() {
  const salt::row_matrix<float> x = salt::row_matrix<float>::Zero(8, 4);
  const salt::row_matrix<float> out = salt::attention(x, x, x, salt::dot_product{}, salt::causal{});
  return static_cast<int>(out(0, 0));
}
