#pragma once
/// \file sparse_setups.hpp
/// The sparse patterns the benchmarks and the demo run, at length L, with the data their masks point to
/// (global indices, segment ids, BigBird tables, block layouts) owned here and kept alive per length.

#include <salt/salt.hpp>

#include <map>
#include <memory>
#include <vector>

namespace salt::bench {

constexpr index window = 256;       // Longformer-style one-sided window
constexpr index global_count = 16;  // global tokens: the first ones, as a CLS token and a question are
constexpr index bigbird_block = 64, bigbird_random = 3;
constexpr index segment_length = 2048;  // packed documents

/// Owns the arrays behind the masks of one length.
struct sparse_data {
  std::vector<index> global;
  std::vector<index> segment_ids;
  std::unique_ptr<bigbird_table> bigbird;
  std::unique_ptr<block_layout_csr> layout;

  explicit sparse_data(index L) {
    for (index i = 0; i < global_count && i < L; ++i) global.push_back(i);
    segment_ids.resize(static_cast<std::size_t>(L));
    for (index t = 0; t < L; ++t) segment_ids[static_cast<std::size_t>(t)] = t / segment_length;
    const index nb = (L + bigbird_block - 1) / bigbird_block;
    bigbird = std::make_unique<bigbird_table>(bigbird_random_table(1, nb, bigbird_random, 2024));
    // A fixed layout: each block row sees its own block, the one before, and the first block.
    std::vector<index> offsets{0}, columns;
    for (index i = 0; i < nb; ++i) {
      if (i >= 2) columns.push_back(0);
      if (i >= 1) columns.push_back(i - 1);
      columns.push_back(i);
      offsets.push_back(static_cast<index>(columns.size()));
    }
    layout = std::make_unique<block_layout_csr>(bigbird_block, 1, nb, std::move(offsets), std::move(columns));
  }
};

/// The data of length L, made once and reused.
inline const sparse_data& sparse_data_for(index L) {
  static std::map<index, std::unique_ptr<sparse_data>> cache;
  auto& slot = cache[L];
  if (!slot) slot = std::make_unique<sparse_data>(L);
  return *slot;
}

inline sliding_window local_window() { return {.left = window, .right = window}; }
inline auto longformer(index L) { return local_window() | global_tokens{sparse_data_for(L).global}; }
inline bigbird bigbird_mask(index L) { return sparse_data_for(L).bigbird->mask(bigbird_block); }
inline block_layout_csr_view layout_mask(index L) { return sparse_data_for(L).layout->mask(); }
inline segments segments_mask(index L) { return {sparse_data_for(L).segment_ids}; }
inline auto strided_causal(index) { return strided{.stride = 128} & causal{}; }
inline auto fixed_causal(index) { return fixed{.block = 128, .summary = 8} & causal{}; }

}  // namespace salt::bench
