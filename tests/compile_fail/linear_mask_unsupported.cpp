// Must not compile: a sliding window through linear attention. Its state sums over keys, which can follow a
// prefix (causal) or drop keys (padding) but not an arbitrary set of pairs, so linear_attention takes only
// masks that are prefix-shaped or key-only (salt::prefix_mask, salt::key_length_mask) and says so.
// expect: salt::linear_attention takes masks that are prefix-shaped or key-only, or both
#include <salt/linear.hpp>

int main() {
  const salt::row_matrix<float> x = salt::row_matrix<float>::Zero(8, 4);
  const salt::row_matrix<float> out =
      salt::linear_attention(x, x, x, salt::elu_plus_one{}, salt::sliding_window{.left = 2, .right = 0});
  return static_cast<int>(out(0, 0));
}
