#pragma once
/// \file approximations.hpp
/// What the benchmarks and the demo share about the kernels that approximate exact attention: the settings
/// they run with, the FLOPs they do, and inputs with exact references to measure their error against.

#include <salt/salt.hpp>

#include <cmath>
#include <cstdint>

namespace salt::bench {

/// ||approx - exact||_F / ||exact||_F.
inline double relative_error(const Eigen::Ref<const row_matrix<float>>& approx, const row_matrix<float>& exact) {
  return static_cast<double>((approx - exact).norm() / exact.norm());
}

// ---- Linear attention ----------------------------------------------------------------------------------

/// FLOPs of one head of L tokens, 2 per multiply-add of the products each form does (counted as performed):
///   non-causal, per token:  2 d p (Q W^T) + 2 d p (K W^T) + 2 m dv (phi(K)^T V) + 2 m dv + 2 m (phi(Q) [S z])
///   causal, per token:      the same, plus 2 C m (phi(Q_c) phi(K_c)^T) + 2 C dv (its product with V), both over
///                           the full C x C square although only its lower triangle (C + 1)/2 per row is used
/// with p the rows of W (0 for maps without a projection), m the features, C the chunk, dv = d. Exponentials
/// (m per query and per key with FAVOR+), the masking and the row sums are not counted: they are O(m + C)
/// per token against O(d m + C m) multiply-adds.
inline double linear_flops(index L, index d, index m, index p, index chunk, bool causal) {
  const double dd = static_cast<double>(d), mm = static_cast<double>(m), pp = static_cast<double>(p);
  const double per_token = 4.0 * dd * pp + 4.0 * mm * dd + 2.0 * mm + (causal ? 2.0 * static_cast<double>(chunk) * (mm + dd) : 0.0);
  return per_token * static_cast<double>(L);
}

/// FLOPs of linear attention's backward (linear_backward.hpp) on one head of L tokens, 2 per multiply-add as
/// performed, p, m, C and dv = d as linear_flops:
///   feature maps  non-causal: phi(K) twice, phi(Q) once, and both back through W^T: 5 x 2 d p; causal (a
///                 forward and a reverse sweep, each recomputing both): 6 x 2 d p
///   state-sized   the state S (its update), dQ's read of [S | z], G's update and the keys' two reads of G:
///                 5 x 2 m (d + 1)
///   chunks        causal only, over the full C x C squares: the scores and their gradients twice (C m and C
///                 (d + 1)), dQ's and dK's products with them (C m each) and dV's (C d): 2 C (4 m + 3 d + 2)
inline double linear_backward_flops(index L, index d, index m, index p, index chunk, bool causal) {
  const double dd = static_cast<double>(d), mm = static_cast<double>(m), pp = static_cast<double>(p);
  const double maps = (causal ? 6.0 : 5.0) * 2.0 * dd * pp, state = 5.0 * 2.0 * mm * (dd + 1);
  const double chunks = causal ? 2.0 * static_cast<double>(chunk) * (4.0 * mm + 3.0 * dd + 2.0) : 0.0;
  return (maps + state + chunks) * static_cast<double>(L);
}

// ---- LSH attention --------------------------------------------------------------------------------------

/// Reformer-like settings for a sequence of L tokens: chunks of 64, one chunk before, HuggingFace's bucket rule
/// (2 L / 64 buckets, factorised above 128), `rounds` hash rounds.
inline lsh_options reformer_options(index L, index rounds, bool causal) {
  return {.n_hashes = rounds, .n_buckets = reformer_buckets(L, 64, L), .chunk_length = 64, .chunks_before = 1,
          .chunks_after = 0, .causal = causal};
}

/// Every pair but a query with itself (LSH's self pair scores -1e5, so exact attention without it is what
/// LSH approximates).
struct off_diagonal {
  bool allows(index q, index k, const problem_shape&) const noexcept { return q != k; }
  static constexpr bool is_always_full() { return false; }
};

/// Inputs whose keys cluster, and the exact attention LSH approximates on them: `clusters` random centres
/// (entries N(0, 1)), each token a random centre plus N(0, noise^2) noise, shared as queries and keys; values
/// uniform in [-1, 1); exact = attention over the same scores (keys normalised as LSH normalises them), the
/// self pair left out.
struct clustered_problem {
  row_matrix<float> qk, v, exact;

  clustered_problem(index L, index d, index clusters = 64, double noise = 0.5, std::uint64_t seed = 11) {
    random_generator rng(seed);
    row_matrix<float> centres(clusters, d);
    for (index i = 0; i < clusters * d; ++i) centres.data()[i] = static_cast<float>(rng.normal());
    qk.resize(L, d);
    for (index t = 0; t < L; ++t) {
      const index c = static_cast<index>(rng.below(static_cast<std::uint64_t>(clusters)));
      for (index j = 0; j < d; ++j) qk(t, j) = static_cast<float>(centres(c, j) + noise * rng.normal());
    }
    v.resize(L, d);
    for (index i = 0; i < L * d; ++i) v.data()[i] = static_cast<float>(2 * rng.uniform() - 1);
    row_matrix<float> k(L, d);
    for (index t = 0; t < L; ++t) {
      const double ms = static_cast<double>(qk.row(t).squaredNorm()) / static_cast<double>(d);
      k.row(t) = qk.row(t) * static_cast<float>(1.0 / std::sqrt(ms + 1e-6));
    }
    exact = attention(qk, k, v, off_diagonal{});
  }
};

}  // namespace salt::bench
