// Learning a Synthesizer Random table (Tay et al. 2021) by gradient descent: the attention pattern is the table
// itself, one learned logit per (query, key) position, with no dot product. The task is a shifted copy under a
// causal mask: query i must return the value of key i - shift (key 0 for the first rows), for values drawn anew
// at every step, so the table must learn the pattern, not the values. salt's attention_backward adds the
// table's gradient (dS summed over the batch, which shares the one table) into a buffer laid out as the table
// (synthesizer_random::gradient_into); plain Adam (adam.hpp) steps it. The relative error ||out - target||_F /
// ||target||_F of held-out values is printed as training goes.
//
//   build/examples/train_synthesizer [steps] [L] [shift]      (defaults: 300, 512, 3)
//
// It checks itself: it fails unless the held-out error ends below 0.1 and the table's largest entry of every row
// is the shifted key.

#include <salt/salt.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "adam.hpp"

namespace {

using salt::index;
using matrix = salt::row_matrix<float>;

constexpr index d = 64, batch = 8;  // value features; sequences per step, sharing the table

index source_of(index i, index shift) { return i >= shift ? i - shift : 0; }

/// `batch` sequences of L random values, stacked (batch L, d), and their shifted copies.
struct copy_task {
  matrix v, target;
};

copy_task draw(index L, index shift, salt::random_generator& rng) {
  copy_task t{matrix(batch * L, d), matrix(batch * L, d)};
  for (index i = 0; i < t.v.size(); ++i) t.v.data()[i] = static_cast<float>(rng.normal());
  for (index b = 0; b < batch; ++b)
    for (index i = 0; i < L; ++i) t.target.row(b * L + i) = t.v.row(b * L + source_of(i, shift));
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 300;
  const salt::index L = argc > 2 ? std::atol(argv[2]) : 512, shift = argc > 3 ? std::atol(argv[3]) : 3;
  const auto t0 = std::chrono::steady_clock::now();
  salt::random_generator rng(2026);

  // The table starts as small noise: attention nearly uniform over each row's causal prefix.
  matrix table(L, L);
  for (salt::index i = 0; i < table.size(); ++i) table.data()[i] = static_cast<float>(0.02 * rng.normal());
  const auto synth = salt::synthesizer_random<float>::shared(table);
  matrix dtable(L, L);

  // The policy has no dot product: q and k only give the call its shape.
  const matrix qk = matrix::Zero(batch * L, 1);
  matrix out(batch * L, d), dout(batch * L, d), dq(batch * L, 1), dk(batch * L, 1), dv(batch * L, d);
  std::vector<float> lse(static_cast<std::size_t>(batch * L));
  using cv = salt::tensor_view<const float>;
  using mv = salt::tensor_view<float>;
  const cv q = cv::bhld(qk.data(), batch, 1, L, 1), k = q;
  const auto forward = [&](const copy_task& t) {
    salt::attention(q, k, cv::bhld(t.v.data(), batch, 1, L, d), mv::bhld(out.data(), batch, 1, L, d),
                    salt::lse_view<float>::bht(lse.data(), 1, L), salt::causal{}, synth);
    return (out - t.target).norm() / t.target.norm();
  };
  copy_task held_out = draw(L, shift, rng);
  const double untrained = forward(held_out);
  std::printf("Synthesizer Random, L = %td, shift %td, batch %td: held-out relative error untrained %.4f\n", L, shift,
              batch, untrained);

  salt_examples::adam opt(0.1f, L, L);
  double error = untrained;
  for (int step = 1; step <= steps; ++step) {
    const copy_task t = draw(L, shift, rng);
    // Loss ||out - target||^2 / ||target||^2: its gradient by the output is 2 (out - target) / ||target||^2.
    const double train_error = forward(t);
    dout = (2.0f / t.target.squaredNorm()) * (out - t.target);
    dtable.setZero();
    salt::attention_backward<float>(q, k, cv::bhld(t.v.data(), batch, 1, L, d), cv::bhld(out.data(), batch, 1, L, d),
                                    salt::lse_view<const float>::bht(lse.data(), 1, L),
                                    cv::bhld(dout.data(), batch, 1, L, d), mv::bhld(dq.data(), batch, 1, L, 1),
                                    mv::bhld(dk.data(), batch, 1, L, 1), mv::bhld(dv.data(), batch, 1, L, d),
                                    salt::causal{}, synth, {}, synth.gradient_into(dtable.data()));
    const auto decay = static_cast<float>(0.5 * (1 + std::cos(3.14159265358979323846 * (step - 1) / steps)));
    opt.step(table, dtable, decay);
    if (step % 50 == 0 || step == steps) {
      error = forward(held_out);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("step %4d: training batch %.4f, held-out %.4f (%.1f s)\n", step, train_error, error, seconds);
    }
  }
  // The pattern itself: each row's largest entry over the keys it may see is the shifted key.
  salt::index rows_right = 0;
  for (salt::index i = 0; i < L; ++i) {
    salt::index best = 0;
    table.row(i).head(i + 1).maxCoeff(&best);
    rows_right += best == source_of(i, shift);
  }
  const bool learned = error < 0.1 && rows_right == L;
  std::printf("held-out relative error %.4f -> %.4f, %td of %td rows peak at key i - %td: %s\n", untrained, error,
              rows_right, L, shift, learned ? "learned" : "NOT LEARNED");
  return learned ? EXIT_SUCCESS : EXIT_FAILURE;
}
