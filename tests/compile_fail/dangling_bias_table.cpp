// Must not compile: bias_table views its table, and a temporary matrix is freed at the end of the
// declaration, before the score policy is used. A matrix kept in a variable, or a Map or Block of one, binds.
//   g++ 12:    error: static assertion failed: salt::bias_table views its table, which must outlive the call: ...
//   clang 14:  error: static_assert failed due to requirement ... "salt::bias_table views its table, ...
// expect: salt::bias_table views its table, which must outlive the call: keep it in a variable, not a temporary
#include <salt/attention.hpp>

int main() {
  const auto bias = salt::bias_table<float>::shared(salt::row_matrix<float>(8, 8));
  const salt::row_matrix<float> x = salt::row_matrix<float>::Zero(8, 4);
  const salt::row_matrix<float> out = salt::attention(x, x, x, salt::no_mask{}, salt::dot_product{} + bias);
  return static_cast<int>(out(0, 0));
}
