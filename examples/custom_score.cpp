// A user-written score in one function: a relative-position bias, s - slope[h] * |q - k| (ALiBi's form;
// T5 buckets the distance first), given to salt::elementwise_score as FlexAttention takes a score_mod. It
// runs under a causal window (each query sees itself and the 200 keys before it) over two heads with their
// own slopes, and is checked against a naive softmax in double written from scratch.
//
//   g++ -std=c++20 -O2 -march=native -fopenmp -I include -isystem /usr/include/eigen3 examples/custom_score.cpp

#include <salt/salt.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main() {
  constexpr salt::index H = 2, L = 777, d = 64, window = 200;
  const std::vector<float> slopes = {0.5f, 0.0625f};  // (H) one per head: the first head looks much closer

  // f(s, batch, head, q, k): s is the scaled dot product in the kernel's precision. The lambda captures a
  // pointer, so the policy stays a small trivially copyable value; the slopes must outlive the call. The
  // distance is narrowed to int before it becomes a float, a conversion the compiler vectorises.
  const auto relative = salt::elementwise_score{
      [slope = slopes.data()](auto s, salt::index, salt::index h, salt::index q, salt::index k) {
        using S = decltype(s);
        return s - S(slope[h]) * S(std::abs(static_cast<int>(q - k)));
      }};
  const salt::sliding_window mask{.left = window};  // right = 0: causal

  // (H, L, d) buffers: two heads of one batch item.
  const salt::row_matrix<float> q = salt::row_matrix<float>::Random(H * L, d);  // (H * L, d)
  const salt::row_matrix<float> k = salt::row_matrix<float>::Random(H * L, d);  // (H * L, d)
  const salt::row_matrix<float> v = salt::row_matrix<float>::Random(H * L, d);  // (H * L, d)
  salt::row_matrix<float> out(H * L, d);                                         // (H * L, d)
  using in_view = salt::tensor_view<const float>;
  salt::attention(in_view::bhld(q.data(), 1, H, L, d), in_view::bhld(k.data(), 1, H, L, d),
                  in_view::bhld(v.data(), 1, H, L, d), salt::tensor_view<float>::bhld(out.data(), 1, H, L, d), mask,
                  relative);

  // Every row of both heads against the formula, in double: keys max(0, i - window) .. i, each with the bias.
  double max_diff = 0;
  for (salt::index h = 0; h < H; ++h) {
    for (salt::index i = 0; i < L; ++i) {
      const salt::index first = std::max<salt::index>(0, i - window);
      Eigen::VectorXd s(i - first + 1);  // (keys seen) logits of row i
      for (salt::index j = first; j <= i; ++j)
        s[j - first] = q.row(h * L + i).cast<double>().dot(k.row(h * L + j).cast<double>()) / std::sqrt(double(d)) -
                       double(slopes[static_cast<std::size_t>(h)]) * double(i - j);
      const Eigen::VectorXd p = (s.array() - s.maxCoeff()).exp();  // (keys seen) unnormalised probabilities
      const Eigen::RowVectorXd o = p.transpose() * v.middleRows(h * L + first, i - first + 1).cast<double>() / p.sum();
      max_diff = std::max(max_diff, (o - out.row(h * L + i).cast<double>()).cwiseAbs().maxCoeff());
    }
  }
  std::printf("elementwise_score relative bias, causal window %td, H=%td L=%td d=%td: max |salt - naive| = %.3g\n",
              window, H, L, d, max_diff);
  return max_diff < 1e-5 ? 0 : 1;
}
