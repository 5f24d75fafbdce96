// Must not compile: alibi views its slopes, and a temporary vector is freed at the end of the declaration,
// before the score policy is used. Slopes kept in a variable bind.
//   g++ 12:    error: static assertion failed: salt: a policy views this data (indices, ids, ...), ...
//   clang 14:  error: static_assert failed due to requirement ... "salt: a policy views this data ...
// expect: salt: a policy views this data .indices, ids, lengths, flags, slopes, layout tables., which must outlive the call: keep it in a variable, not a temporary
#include <salt/attention.hpp>

#include <vector>

int main() {
  const auto slopes = salt::alibi{std::vector<double>{0.5}};
  const salt::row_matrix<float> x = salt::row_matrix<float>::Zero(8, 4);
  const salt::row_matrix<float> out = salt::attention(x, x, x, salt::causal{}, salt::dot_product{} + slopes);
  return static_cast<int>(out(0, 0));
}
