#pragma once
/// \file parameter_setups.hpp
/// The parameters of the kernels that have them (Linformer's projections, Synthesizer's tables and MLP),
/// drawn from fixed seeds at length L and owned here. Benchmarks walk lengths in increasing order, so one
/// length is kept at a time: a Synthesizer Random table of L = 8192 alone is 256 MiB.

#include <salt/salt.hpp>

#include <cmath>
#include <memory>
#include <optional>
#include <utility>

namespace salt::bench {

constexpr index linformer_k = 256;      // projected length of the Linformer runs
constexpr index synthesizer_rank = 8;   // factorized Synthesizer's R1 R2^T rank
constexpr index synthesizer_hidden = 64;  // dense Synthesizer's MLP width (d_model = d)

/// make() for the last `key` asked for, rebuilt when the key changes (one cache per call site: each
/// lambda is its own type).
template <class Key, class Make>
const auto& latest_for(const Key& key, Make make) {
  using value_type = decltype(make());
  static std::optional<Key> cached;
  static std::unique_ptr<value_type> value;
  if (cached != key) {
    value.reset();  // free the old one before drawing the new one
    value = std::make_unique<value_type>(make());
    cached = key;
  }
  return *value;
}

inline row_matrix<float> random_matrix(index rows, index cols, double stddev, std::uint64_t seed) {
  random_generator rng(seed);
  row_matrix<float> m(rows, cols);
  for (index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(stddev * rng.normal());
  return m;
}

/// Linformer projections of max_len L, shared by keys, values and heads, N(0, 1/k).
inline const linformer_projections<float>& linformer_for(index L, index k = linformer_k) {
  return latest_for(std::pair{L, k}, [L, k] {
    return linformer_projections<float>::gaussian(k, L, 1, linformer_sharing::shared_kv, 42);
  });
}

/// A Synthesizer Random table, L x L, N(0, 1).
inline const row_matrix<float>& synthesizer_table_for(index L) {
  return latest_for(L, [L] { return random_matrix(L, L, 1.0, 7); });
}

struct factorized_parameters {
  row_matrix<float> r1, r2;  // (L, rank), entries N(0, 1/sqrt(rank)) so the logits are N(0, 1)
};
inline const factorized_parameters& synthesizer_factors_for(index L) {
  return latest_for(L, [L] {
    const double s = 1.0 / std::sqrt(std::sqrt(static_cast<double>(synthesizer_rank)));
    return factorized_parameters{random_matrix(L, synthesizer_rank, s, 8), random_matrix(L, synthesizer_rank, s, 9)};
  });
}

struct dense_parameters {
  row_matrix<float> w1, b1, w2, b2;  // (hidden, d), (1, hidden), (L, hidden), (1, L); Xavier-like scales
};
inline const dense_parameters& synthesizer_mlp_for(index L, index d) {
  return latest_for(std::pair{L, d}, [L, d] {
    const double h = static_cast<double>(synthesizer_hidden);
    return dense_parameters{random_matrix(synthesizer_hidden, d, 1.0 / std::sqrt(static_cast<double>(d)), 10),
                            random_matrix(1, synthesizer_hidden, 0.1, 11),
                            random_matrix(L, synthesizer_hidden, 1.0 / std::sqrt(h), 12), random_matrix(1, L, 0.1, 13)};
  });
}

}  // namespace salt::bench
