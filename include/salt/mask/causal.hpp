#pragma once
/// \file mask/causal.hpp
/// `causal`: query i sees keys up to its own position, with the alignment stated in the type.

#include <algorithm>
#include <cstdint>

#include "capabilities.hpp"
#include "concept.hpp"

namespace salt {

/// How query positions line up with key positions when Lq != Lk.
enum class causal_alignment {
  bottom_right,  ///< the last query lines up with the last key: query i sees keys j <= i + (Lk - Lq). For decoding.
  top_left,      ///< the first query lines up with the first key: query i sees keys j <= i.
};

/// Query i sees key j when j <= i + base + offset, where base is Lk - Lq (bottom_right, the default) or 0
/// (top_left). `offset` shifts the diagonal: -1 excludes each query's own position. A prefix_mask through
/// last_key, so linear attention follows it with its chunked prefix sums.
template <causal_alignment Align = causal_alignment::bottom_right>
struct causal {
  index offset = 0;  ///< added to the diagonal: 0 includes the query's own position, -1 excludes it

  /// Last key that query q may see (may be negative: then it sees none); q + last_key(0, s).
  index last_key(index q, const problem_shape& s) const noexcept {
    const index base = Align == causal_alignment::bottom_right ? s.lk - s.lq : 0;
    return q + base + offset;
  }
  /// mask_policy: k <= last_key(q, s).
  bool allows(index q, index k, const problem_shape& s) const noexcept { return k <= last_key(q, s); }
  /// mask_policy: false.
  static constexpr bool is_always_full() { return false; }
  /// column_mask. Key k is seen by the queries whose last key is k or later: q >= k - (last_key(0) - 0).
  query_bits allowed_queries(index k, index q_begin, index count, const problem_shape& s) const noexcept {
    return detail::allow_interval(q_begin, count, k - last_key(0, s), q_begin + count);
  }

  /// planned_mask: the blocks up to the last key of the tile's last query; those wholly within the first
  /// query's keys are full, the ones the diagonal cuts partial. O(1).
  void plan(const block_query& bq, block_plan& out) const noexcept {
    // Keys up to the first query's last key are visible to the whole tile; beyond it, up to the last
    // query's last key, the diagonal cuts through the block.
    const index full_end = last_key(bq.q_begin, bq.shape) + 1;
    const index end = last_key(bq.q_end - 1, bq.shape) + 1;
    out.add_keys(bq, 0, end, 0, full_end);
  }
};

/// `salt::causal{}` is bottom-right aligned.
causal() -> causal<causal_alignment::bottom_right>;
/// `salt::causal{offset}` is bottom-right aligned.
causal(index) -> causal<causal_alignment::bottom_right>;

}  // namespace salt
