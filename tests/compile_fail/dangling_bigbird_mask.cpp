// Must not compile: mask() of a temporary BigBird table views entries that are freed at the end of the
// declaration, before the mask is used (a use-after-free under AddressSanitizer when it compiled). Keep
// the table in a variable and take its mask from there.
//   g++ 12:    error: static assertion failed: salt::bigbird_table::mask() returns a view of the table, ...
//   clang 14:  error: static_assert failed due to requirement ... "salt::bigbird_table::mask() returns ...
// expect: returns a view of the table, which must outlive the call: keep the table in a variable, not a temporary
#include <salt/attention.hpp>

int main() {
  const auto mask = salt::bigbird_random_table(1, 4, 1, 7).mask(64);
  const salt::row_matrix<float> x = salt::row_matrix<float>::Zero(256, 4);
  const salt::row_matrix<float> out = salt::attention(x, x, x, mask);
  return static_cast<int>(out(0, 0));
}
