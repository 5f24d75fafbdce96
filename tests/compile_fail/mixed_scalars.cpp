// Must not compile: q in float, k and v in double. salt never converts silently (a hidden copy and a
// precision the caller did not choose), so the single-head front door stops with a static_assert.
//   error: static assertion failed: salt::attention: q, k and v must have the same scalar type.
// expect: salt::attention: q, k and v must have the same scalar type
#include <salt/attention.hpp>

int main() {
  const salt::row_matrix<float> q = salt::row_matrix<float>::Zero(8, 4);
  const salt::row_matrix<double> kv = salt::row_matrix<double>::Zero(8, 4);
  const salt::row_matrix<float> out = salt::attention(q, kv, kv);
  return static_cast<int>(out(0, 0));
}
