// Autoregressive decoding with linear attention's recurrent state: 100,000 tokens, one at a time, in
// constant memory. Each step appends the token's key and value and attends its query to everything so
// far; the "model" feeding the next token is a fixed random mixing of the attention output, enough to make
// every token depend on all earlier ones. Prints tokens/s and checks the last steps against the causal
// parallel form on the same tokens.
#include <salt/salt.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>

int main() {
  constexpr salt::index d = 64, m = 64, steps = 100000;
  using row = Eigen::Matrix<float, 1, d>;
  salt::favor_plus<float> phi(salt::random_features<float>::orthogonal(m, d, /*seed=*/2024));
  salt::recurrent_state<float, salt::favor_plus<float>> state(phi, d, d);  // S (m, d), z (m): all it keeps

  // The toy model: the next token's q, k, v are fixed linear maps of the previous output plus noise.
  salt::random_generator rng(7);
  salt::row_matrix<float> mix(d, 3 * d);
  for (salt::index i = 0; i < mix.size(); ++i) mix.data()[i] = static_cast<float>(rng.normal() / std::sqrt(double(d)));
  Eigen::Matrix<float, 1, 3 * d> qkv;
  row out = row::Zero();

  // Keep the last 256 tokens to check against the parallel form at the end.
  constexpr salt::index tail = 256;
  salt::row_matrix<float> q_tail(tail, d), k_tail(tail, d), v_tail(tail, d), out_tail(tail, d);
  salt::recurrent_state<float, salt::favor_plus<float>> check_state(phi, d, d);

  const auto t0 = std::chrono::steady_clock::now();
  for (salt::index t = 0; t < steps; ++t) {
    qkv.noalias() = out * mix;
    for (salt::index i = 0; i < 3 * d; ++i) qkv[i] += static_cast<float>(rng.uniform() - 0.5);
    const auto q = qkv.segment<d>(0), k = qkv.segment<d>(d), v = qkv.segment<d>(2 * d);
    state.append(k, v);
    state.query(q, out);
    if (t >= steps - tail) {
      const salt::index r = t - (steps - tail);
      q_tail.row(r) = q, k_tail.row(r) = k, v_tail.row(r) = v;
      check_state.append(k, v);
      check_state.query(q, out_tail.row(r));
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("decoded %td tokens in %.3f s: %.0f tokens/s (d = %td, m = %td; state %td floats, whatever the length)\n",
              steps, seconds, static_cast<double>(steps) / seconds, d, m, m * d + m);

  // The streaming state of the last 256 tokens against the chunked causal form on the same tokens.
  const salt::row_matrix<float> parallel = salt::linear_attention(q_tail, k_tail, v_tail, phi, salt::causal{});
  const float diff = (parallel - out_tail).cwiseAbs().maxCoeff();
  std::printf("streaming vs causal parallel, last %td tokens: max |difference| = %.2e\n", tail, diff);
  return state.size() == steps && diff < 1e-4f && out.allFinite() ? 0 : 1;
}
