// Must not compile: a mask given where linear attention takes its feature map. linear_attention requires
// salt::feature_map<Map, T>, and the compiler names it.
//   g++ 12:    required for the satisfaction of 'feature_map<Map, typename DQ::Scalar>'
//                [with Map = salt::causal<salt::causal_alignment::bottom_right>; ...]
//              note: the required expression 'F::log_scaled()' is invalid
//   clang 14:  note: because 'F::log_scaled()' would be invalid: no member named 'log_scaled' in
//                'salt::causal<salt::causal_alignment::bottom_right>'
// expect: feature_map
#include <salt/linear.hpp>

int main() {
  const salt::row_matrix<float> x = salt::row_matrix<float>::Zero(8, 4);
  const salt::row_matrix<float> out = salt::linear_attention(x, x, x, salt::causal{});
  return static_cast<int>(out(0, 0));
}
