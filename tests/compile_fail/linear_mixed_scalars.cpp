// Must not compile: linear attention with float queries and double keys and values.
//   error: static assertion failed: salt::linear_attention: q, k and v must have the same scalar type.
// expect: salt::linear_attention: q, k and v must have the same scalar type
#include <salt/linear.hpp>

int main() {
  const salt::row_matrix<float> q = salt::row_matrix<float>::Zero(8, 4);
  const salt::row_matrix<double> kv = salt::row_matrix<double>::Zero(8, 4);
  const salt::row_matrix<float> out = salt::linear_attention(q, kv, kv, salt::elu_plus_one{});
  return static_cast<int>(out(0, 0));
}
