#pragma once
/// \file mask/global_tokens.hpp
/// `global_tokens`: a few tokens attend everywhere and are attended by everyone (Longformer's global
/// attention, the [CLS] token of a classifier). Usually combined with a window: `window | global`.

#include <algorithm>
#include <cstddef>

#include "../borrowed_span.hpp"
#include "../error.hpp"
#include "concept.hpp"

namespace salt {

/// Tokens listed in `indices` are global: query t sees every key and key t is seen by every query, so
/// query q may see key k when q or k is listed. An index names one token of one sequence, query t and key t
/// alike, so this mask needs Lq == Lk. The indices are sorted, unique, in [0, L), shared by every batch
/// item and head, and not copied: they must outlive the call. A temporary container (an rvalue vector)
/// is therefore a compile error; an lvalue or an explicit std::span binds.
///
///     const std::vector<salt::index> cls{0};
///     salt::attention(q, k, v, salt::sliding_window{.left = 256, .right = 256} | salt::global_tokens{cls});
///
/// Cost O(L * g * d) for g global tokens, beside what it is combined with: global rows visit every key
/// block, other rows only the blocks that hold global keys.
struct global_tokens {
  borrowed_span<const index> indices = {};  ///< (g): the global tokens, sorted and unique

  /// Whether token t is global: a binary search, O(log g).
  bool is_global(index t) const noexcept { return std::binary_search(indices.begin(), indices.end(), t); }

  /// mask_policy: q or k is global; O(log g).
  bool allows(index q, index k, const problem_shape&) const noexcept { return is_global(k) || is_global(q); }
  /// mask_policy: false.
  static constexpr bool is_always_full() { return false; }
  /// column_mask. One binary search for the key and one for the run of queries, instead of two per pair.
  query_bits allowed_queries(index k, index q_begin, index count, const problem_shape&) const noexcept {
    if (is_global(k)) return detail::bit_range(0, count);
    query_bits bits = 0;
    const index* last = indices.data() + indices.size();
    for (const index* it = std::lower_bound(indices.data(), last, q_begin); it != last && *it < q_begin + count; ++it)
      bits |= query_bits{1} << (*it - q_begin);
    return bits;
  }

  /// planned_mask: every block, full, for a tile of global queries; every block for a tile with some (partial
  /// where not all keys are global); else only the blocks that hold global keys. O(log g) per visited block.
  void plan(const block_query& bq, block_plan& out) const noexcept {
    const index* first = indices.data();
    const index* last = first + indices.size();
    const index B = bq.block, lk = bq.shape.lk, blocks = bq.key_blocks();
    // Global queries of the tile: a tile made of them sees every pair.
    const index* q_lo = std::lower_bound(first, last, bq.q_begin);
    const index* q_hi = std::lower_bound(q_lo, last, bq.q_end);
    if (q_hi - q_lo == bq.q_end - bq.q_begin) {
      out.add(0, blocks, true);
      return;
    }
    const bool some_global_query = q_hi != q_lo;  // then every block is visited, partial where not all-global
    // Walk the blocks that hold global keys, one binary search each: O(log g) per visited block. A block
    // whose keys are all global is full whoever asks.
    const index* k_end = std::lower_bound(first, last, lk);
    index next = 0;  // first block not planned yet
    for (const index* it = std::lower_bound(first, k_end, index{0}); it != k_end;) {
      const index b = *it / B, b_end = std::min((b + 1) * B, lk);
      const index* stop = std::lower_bound(it, k_end, b_end);
      if (some_global_query) out.add(next, b, false);
      out.add(b, b + 1, stop - it == b_end - b * B);
      next = b + 1;
      it = stop;
    }
    if (some_global_query) out.add(next, blocks, false);
  }

  /// Throws salt::error naming `api` unless Lq == Lk and the indices are sorted, unique and in [0, L); O(g).
  void check(const problem_dims& dims, const char* api) const {
    detail::require(dims.lq == dims.lk, api, ": global_tokens needs Lq == Lk, got ", dims.lq, " and ", dims.lk);
    for (std::size_t i = 0; i < indices.size(); ++i) {
      detail::require(indices[i] >= 0 && indices[i] < dims.lk, api, ": global token index ", indices[i],
                      " is outside [0, ", dims.lk, ")");
      detail::require(i == 0 || indices[i - 1] < indices[i], api, ": global_tokens indices must be sorted and unique");
    }
  }
};

}  // namespace salt
