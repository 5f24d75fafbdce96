// Must not compile: an int is not a mask policy. The mask parameter is constrained by salt::mask_policy, so
// the compiler names the concept that is not met instead of failing deep inside the engine.
//   g++ 12:    required for the satisfaction of 'mask_policy<Mask>' [with Mask = int]
//              note: the required expression 'm.allows(q, k, s)' is invalid
//   clang 14:  note: because 'int' does not satisfy 'mask_policy'
// expect: mask_policy
#include <salt/attention.hpp>

int main() {
  const salt::row_matrix<float> x = salt::row_matrix<float>::Zero(8, 4);
  const salt::row_matrix<float> out = salt::attention(x, x, x, 42);
  return static_cast<int>(out(0, 0));
}
