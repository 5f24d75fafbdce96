// A consumer of salt: builds and runs only if the package exposes salt::salt with its dependencies.
#include <salt/salt.hpp>

int main() {
  const salt::row_matrix<float> q = salt::row_matrix<float>::Random(7, 4);  // (Lq, d)
  const salt::row_matrix<float> k = salt::row_matrix<float>::Random(7, 4);  // (Lk, d)
  const salt::row_matrix<float> v = salt::row_matrix<float>::Random(7, 4);  // (Lk, dv)
  salt::row_matrix<float> o = salt::attention(q, k, v, salt::causal{});    // (Lq, dv)
  return o.rows() == 7 && o.allFinite() ? 0 : 1;
}
