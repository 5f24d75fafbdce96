#pragma once
/// \file mask/segments.hpp
/// `segments`: several variable-length sequences packed into one, each attending only to itself.

#include <algorithm>
#include <cstddef>

#include "../borrowed_span.hpp"
#include "../error.hpp"
#include "concept.hpp"

namespace salt {

/// Token t belongs to segment `ids[t]`; query q sees key k when both lie in the same segment. The ids
/// are non-decreasing (each segment is a contiguous run of tokens), one per token, so this mask needs
/// Lq == Lk. They are shared by every batch item and head, and not copied: they must outlive the call
/// (a temporary container is a compile error).
///
///     const std::vector<salt::index> ids{0, 0, 0, 1, 1, 2, 2, 2, 2};  // sequences of 3, 2 and 4 tokens
///     salt::attention(q, k, v, salt::segments{ids} & salt::causal{});
///
/// Cost about the sum of squared segment lengths times d, plus the tiles and blocks that straddle segment
/// edges: a query tile visits the key range of its own segments, found by binary search.
struct segments {
  borrowed_span<const index> ids = {};  ///< (L): segment of each token, non-decreasing

  /// mask_policy: ids[q] == ids[k].
  bool allows(index q, index k, const problem_shape&) const noexcept { return ids[q] == ids[k]; }
  /// mask_policy: false.
  static constexpr bool is_always_full() { return false; }

  /// planned_mask: the key range of the segments the tile's queries lie in, full only for a tile inside one
  /// segment; O(log L) per tile.
  void plan(const block_query& bq, block_plan& out) const noexcept {
    if (bq.q_begin >= bq.q_end) return;
    const index* first = ids.data();
    const index* last = first + std::min<index>(static_cast<index>(ids.size()), bq.shape.lk);
    // The tile's queries span segments s0..s1, whose keys run from the start of s0 to the end of s1; every
    // key there shares a segment with some query of the tile. Only a tile inside one segment sees whole blocks.
    const index s0 = ids[bq.q_begin], s1 = ids[bq.q_end - 1];
    const index k_begin = std::lower_bound(first, first + bq.q_begin, s0) - first;
    const index k_end = std::upper_bound(first + bq.q_end - 1, last, s1) - first;
    const bool one_segment = s0 == s1;
    out.add_keys(bq, k_begin, k_end, one_segment ? k_begin : 0, one_segment ? k_end : 0);
  }

  /// Throws salt::error naming `api` unless Lq == Lk, there is one id per token, and the ids are
  /// non-decreasing; O(L).
  void check(const problem_dims& dims, const char* api) const {
    detail::require(dims.lq == dims.lk, api, ": segments needs Lq == Lk, got ", dims.lq, " and ", dims.lk);
    detail::require(static_cast<index>(ids.size()) == dims.lk, api, ": segments has ", ids.size(), " ids for ",
                    dims.lk, " tokens");
    for (std::size_t t = 1; t < ids.size(); ++t)
      detail::require(ids[t - 1] <= ids[t], api, ": segments ids must be non-decreasing, but token ", t, " has id ",
                      ids[t], " after ", ids[t - 1]);
  }
};

}  // namespace salt
