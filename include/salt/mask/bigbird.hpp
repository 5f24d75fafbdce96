#pragma once
/// \file mask/bigbird.hpp
/// BigBird's block-sparse pattern (Zaheer et al. 2020, the ITC variant HuggingFace transformers runs in
/// BigBirdBlockSparseAttention): blocks of B tokens; the first and last blocks are global (they see every
/// key and every query sees them); every block sees its neighbours (a 3-block window); and each other query
/// block sees r random key blocks, per head, drawn from salt's seeded generator or passed in.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "../borrowed_span.hpp"
#include "../error.hpp"
#include "../random.hpp"
#include "block_layout.hpp"
#include "concept.hpp"

namespace salt {

/// BigBird ITC: with nb = ceil(L / B) blocks, query block i sees key block j when
///   - i or j is 0 or nb - 1 (global blocks: their rows see everything, their columns are seen by all),
///   - |i - j| <= 1 (the sliding window of three blocks), or
///   - j is one of query block i's random blocks: `table[h][i - 1][0 .. random)` for i in 1 .. nb - 2.
/// Each allowed block counts once (set semantics): a random entry that repeats another or falls on a
/// window or global block adds nothing, and -1 marks an unused entry.
///
/// The table has HuggingFace's `rand_attn` layout, (heads, nb - 2, random) int32, one row per non-global
/// query block, so a table drawn by transformers can be passed as it is (`heads` = 1 shares one row set
/// among all query heads). `bigbird_random_table` draws one from a seed.
///
///     const auto table = salt::bigbird_random_table(heads, nb, 3, seed);
///     salt::attention(qv, kv, vv, outv, table.mask(64) & salt::key_padding{lengths});
///
/// Conventions, against transformers (modeling_big_bird.py):
///   - Self-attention only: Lq == Lk, else salt::error.
///   - L need not be a multiple of B: the last block is shorter, and the table is drawn for nb = ceil(L / B).
///     transformers pads the input to a multiple of B and masks the padding keys (with a -10000 penalty),
///     which gives the same attention for the real tokens.
///   - Short sequences stay sparse. transformers silently switches to full attention when
///     L <= (5 + 2 r) B; salt applies the pattern at every length (at nb <= 4 it allows every pair anyway).
///   - Set semantics, the training-mode definition. transformers gathers key blocks by index, so it counts a
///     block twice when a random index repeats a window or global block (its draws for the last rows can);
///     in eval mode its random indices are all 0, which counts block 0 r + 1 times. salt counts each allowed
///     block once; pass r = 0 for eval mode's pattern.
///
/// Cost O(L (3 + 2 + r) B d) beside the global rows' O(2 B L d): a tile visits only its rows' blocks.
struct bigbird {
  index block = 64;   ///< B: tokens per block
  index random = 0;   ///< r: random key blocks per non-global query block
  index heads = 1;    ///< heads in `table`: 1 (shared) or the number of query heads
  borrowed_span<const std::int32_t> table = {};  ///< (heads, nb - 2, random): key blocks, or -1 for none

  /// Number of blocks for a sequence of `length` tokens.
  index blocks_for(index length) const noexcept { return (length + block - 1) / block; }

  /// The random key blocks of query block i (1 <= i <= nb - 2) of query head h.
  const std::int32_t* random_row(index h, index i, index nb) const noexcept {
    return table.data() + (((heads == 1 ? 0 : h) * (nb - 2) + (i - 1)) * random);
  }

  /// mask_policy: the rule above for the blocks of q and k; O(random).
  bool allows(index q, index k, const problem_shape& s) const noexcept {
    const index nb = blocks_for(s.lk), p = q + s.lk - s.lq;  // p = q, as Lq == Lk; kept aligned with plan()
    if (p < 0) return false;
    const index i = p / block, j = k / block;
    if (i == 0 || i == nb - 1 || j == 0 || j == nb - 1 || (j >= i - 1 && j <= i + 1)) return true;
    const std::int32_t* row = random_row(s.head, i, nb);
    for (index t = 0; t < random; ++t)
      if (row[t] == j) return true;
    return false;
  }
  /// mask_policy: false.
  static constexpr bool is_always_full() { return false; }
  static constexpr index plan_lists() { return 4; }  ///< the plan and three spares

  /// planned_mask: every block for a global row, else the row's window, global and random blocks, each
  /// once; O((5 + random)^2) per BigBird row the tile overlaps, no allocation.
  void plan(const block_query& bq, block_plan& out) const noexcept {
    const index nb = blocks_for(bq.shape.lk);
    detail::plan_layout_rows(bq, block, out, [&](index i, detail::layout_row_sink& sink) {
      if (i == 0 || i >= nb - 1) {  // a global row sees every block
        sink.run(0, nb);
        return;
      }
      // The row's blocks in increasing order without sorting: repeatedly take the smallest entry above the
      // last one taken. O((5 + r)^2) per row, no allocation, and repeats collapse.
      const std::int32_t* row = random_row(bq.shape.head, i, nb);
      for (index previous = -1;;) {
        index next = nb;
        const auto consider = [&](index c) {
          if (c > previous && c < next) next = c;
        };
        consider(0);
        consider(i - 1);
        consider(i);
        consider(i + 1);
        consider(nb - 1);
        for (index t = 0; t < random; ++t) consider(row[t]);
        if (next == nb) break;
        sink(next);
        previous = next;
      }
    });
  }

  /// Throws salt::error naming `api` unless block > 0, 0 <= random < 2^31, Lq == Lk, `heads` is 1 or Hq, the
  /// table has heads * (nb - 2) * random entries and each is -1 or in [0, nb); O(table entries).
  void check(const problem_dims& dims, const char* api) const {
    detail::require(block > 0, api, ": bigbird block size must be positive, got ", block);
    detail::require(random >= 0 && random < (index{1} << 31), api, ": bigbird random blocks per row must be in [0, 2^31), got ",
                    random);
    detail::require(dims.lq == dims.lk, api, ": bigbird needs Lq == Lk, got ", dims.lq, " and ", dims.lk);
    detail::require(heads == 1 || heads == dims.q_heads, api, ": bigbird table has ", heads,
                    " heads, neither 1 nor the ", dims.q_heads, " query heads");
    const index nb = blocks_for(dims.lk), rows = std::max<index>(nb - 2, 0);
    detail::require(random == 0 || heads * rows <= (index{1} << 62) / random, api, ": bigbird heads * (blocks - 2) * random = ",
                    heads, " * ", rows, " * ", random, " is too large");
    detail::require(static_cast<index>(table.size()) == heads * rows * random, api, ": bigbird table has ",
                    table.size(), " entries but heads * (blocks - 2) * random = ", heads, " * ", rows, " * ", random,
                    " = ", heads * rows * random, " (L = ", dims.lk, " makes ", nb, " blocks of ", block, ")");
    for (std::size_t e = 0; e < table.size(); ++e) {
      const index v = table[e], row = static_cast<index>(e) / random;
      detail::require(v >= -1 && v < nb, api, ": bigbird random block ", v, " of head ", row / rows,
                      ", query block ", row % rows + 1, " is outside [0, ", nb, ") (use -1 for none)");
    }
  }
};

/// An owned table of BigBird random blocks, (heads, nb - 2, random) int32 in HuggingFace's rand_attn layout.
class bigbird_table {
 public:
  /// Takes entries as they are: key blocks in [0, nb), or -1 for none. Throws salt::error on bad sizes.
  bigbird_table(index heads, index blocks, index random, std::vector<std::int32_t> entries)
      : heads_(heads), blocks_(blocks), random_(random), entries_(std::move(entries)) {
    const char* api = "salt::bigbird_table";
    check_sizes(api, heads, blocks, random);
    const index rows = std::max<index>(blocks - 2, 0);
    detail::require(static_cast<index>(entries_.size()) == heads * rows * random, api, ": ", entries_.size(),
                    " entries but heads * (blocks - 2) * random = ", heads, " * ", rows, " * ", random, " = ",
                    heads * rows * random);
    for (const std::int32_t v : entries_)
      detail::require(v >= -1 && v < blocks, api, ": random block ", v, " is outside [0, ", blocks, ") (use -1 for none)");
  }

  /// The mask for blocks of `block` tokens (the table fits sequences of (nb - 1) B + 1 to nb B tokens).
  /// A view: valid while this table lives and is not moved from.
  bigbird mask(index block) const& noexcept { return {block, random_, heads_, entries_}; }
  /// A temporary table dies before its mask could be used: a compile error (a template, so only a call fails).
  template <class Unused = void>
  bigbird mask(index) const&& noexcept {
    static_assert(!std::is_same_v<Unused, Unused>,
                  "salt::bigbird_table::mask() returns a view of the table, which must outlive the call: "
                  "keep the table in a variable, not a temporary.");
    return {};
  }

  /// Heads of the table: 1 (shared) or one per query head.
  index heads() const noexcept { return heads_; }
  /// nb: BigBird blocks per sequence the table was made for.
  index blocks() const noexcept { return blocks_; }
  /// r: random key blocks per non-global query block.
  index random() const noexcept { return random_; }
  /// (heads, nb - 2, random): the entries, a view of this table's storage.
  std::span<const std::int32_t> entries() const& noexcept { return entries_; }
  std::span<const std::int32_t> entries() const&& = delete;  ///< deleted: it would view a temporary's entries
  /// Random block `t` of query block i (1 <= i <= nb - 2) of head h.
  std::int32_t at(index h, index i, index t) const noexcept {
    return entries_[static_cast<std::size_t>((h * (blocks_ - 2) + (i - 1)) * random_ + t)];
  }

  /// Throws salt::error naming `api` unless 1 <= heads < 2^31, 0 <= blocks < 2^31, 0 <= random < 2^31 and
  /// heads * blocks * random <= 2^62.
  static void check_sizes(const char* api, index heads, index blocks, index random) {
    detail::require(heads >= 1 && heads < (index{1} << 31), api, ": heads must be in [1, 2^31), got ", heads);
    detail::require(blocks >= 0 && blocks <= std::numeric_limits<std::int32_t>::max(), api,
                    ": blocks must be in [0, 2^31), got ", blocks);
    detail::require(random >= 0, api, ": random blocks per row must be >= 0, got ", random);
    // heads * (blocks - 2) * random entries: keep the product below 2^62.
    detail::require(random < (index{1} << 31), api, ": random blocks per row must be below 2^31, got ", random);
    detail::require(heads <= (index{1} << 62) / std::max<index>(blocks * random, 1), api, ": heads * blocks * random = ",
                    heads, " * ", blocks, " * ", random, " is too large");
  }

 private:
  index heads_, blocks_, random_;
  std::vector<std::int32_t> entries_;  // (heads, nb - 2, random)
};

/// Draws BigBird's random blocks from salt's portable generator: for each head, and each query block i in
/// [1, nb - 2], `random` distinct key blocks among [1, nb - 2] outside i's window {i - 1, i, i + 1}, that is
/// never a window or global block (transformers' constraint, without its extra rules: it also keeps block 1
/// off block nb - 2 and vice versa, and for L in {1024, 3072, 4096} draws only from the first 1024 tokens).
/// A row with no more candidates than `random` takes them all, in increasing order, and fills the rest
/// with -1. The same seed gives the same table on every platform; the draw order (heads, then rows, then
/// Floyd's sampling with random_generator::below) is part of that promise.
inline bigbird_table bigbird_random_table(index heads, index blocks, index random, std::uint64_t seed) {
  bigbird_table::check_sizes("salt::bigbird_random_table", heads, blocks, random);
  const index rows = std::max<index>(blocks - 2, 0);
  std::vector<std::int32_t> entries(static_cast<std::size_t>(heads * rows * random), -1);
  random_generator rng(seed);
  std::vector<index> chosen;  // candidate numbers drawn for the current row
  chosen.reserve(static_cast<std::size_t>(random));
  for (index h = 0; h < heads; ++h) {
    for (index i = 1; i <= rows; ++i) {
      // Candidates: blocks [1, i - 2] then [i + 2, nb - 2]; candidate number n maps to a block below.
      const index left = std::max<index>(i - 2, 0), right = std::max<index>(blocks - 3 - i, 0), n = left + right;
      const auto block_of = [&](index c) { return c < left ? 1 + c : i + 2 + (c - left); };
      std::int32_t* row = entries.data() + (h * rows + (i - 1)) * random;
      if (n <= random) {
        for (index c = 0; c < n; ++c) row[c] = static_cast<std::int32_t>(block_of(c));
        continue;
      }
      // Floyd's algorithm: `random` distinct numbers of [0, n) from exactly `random` draws.
      chosen.clear();
      for (index j = n - random; j < n; ++j) {
        const index t = static_cast<index>(rng.below(static_cast<std::uint64_t>(j + 1)));
        chosen.push_back(std::find(chosen.begin(), chosen.end(), t) == chosen.end() ? t : j);
      }
      for (index t = 0; t < random; ++t) row[t] = static_cast<std::int32_t>(block_of(chosen[static_cast<std::size_t>(t)]));
    }
  }
  return bigbird_table(heads, blocks, random, std::move(entries));
}

}  // namespace salt
