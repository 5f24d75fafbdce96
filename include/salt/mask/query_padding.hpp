#pragma once
/// \file mask/query_padding.hpp
/// Query padding: queries past each sequence's valid length see no key, so they output zeros (and LSE
/// -inf) and cost nothing. The twin of `key_padding`, for batches padded on the query side too.

#include <algorithm>

#include "../borrowed_span.hpp"
#include "../error.hpp"
#include "concept.hpp"

namespace salt {

/// Batch item b's queries at or past `lengths[b]` see no key: their output rows are exactly 0 and their
/// LSE is -inf, as HuggingFace's Longformer outputs 0 for padded query rows. Combine it with the mask that
/// holds the valid queries' pattern, usually with `&`:
///
///     const std::vector<salt::index> lengths{700, 1024};  // one per batch item
///     salt::attention(qv, kv, vv, outv, salt::key_padding{lengths} & salt::query_padding{lengths});
///
/// Padded queries cost nothing: a query tile wholly past the length plans no key block, a tile wholly
/// inside plans every block full (no per-pair test), and only the tile the length cuts is partial. The
/// lengths (one per batch item, in [0, Lq]) are not copied: they must outlive the call (a temporary
/// container is a compile error).
struct query_padding {
  borrowed_span<const index> lengths = {};  ///< (batch): valid queries of each batch item

  /// mask_policy: q < lengths[batch].
  bool allows(index q, index, const problem_shape& s) const noexcept { return q < lengths[s.batch]; }
  /// mask_policy: false.
  static constexpr bool is_always_full() { return false; }
  /// column_mask. Every key is seen by the run's queries below the length.
  query_bits allowed_queries(index, index q_begin, index count, const problem_shape& s) const noexcept {
    return detail::bit_range(0, std::clamp<index>(lengths[s.batch] - q_begin, 0, count));
  }

  /// planned_mask: nothing for a tile of padded queries, else every key block, full when the whole tile is
  /// valid; O(1).
  void plan(const block_query& bq, block_plan& out) const noexcept {
    const index valid = lengths[bq.shape.batch];
    if (bq.q_begin >= valid) return;  // a tile of padded queries visits nothing
    out.add(0, bq.key_blocks(), bq.q_end <= valid);
  }

  /// Throws salt::error naming `api` unless there is one length per batch item, each in [0, Lq].
  void check(const problem_dims& dims, const char* api) const {
    detail::require(static_cast<index>(lengths.size()) == dims.batch, api, ": query_padding has ", lengths.size(),
                    " lengths for a batch of ", dims.batch);
    for (index b = 0; b < dims.batch; ++b)
      detail::require(lengths[b] >= 0 && lengths[b] <= dims.lq, api, ": query_padding length ", lengths[b],
                      " of batch item ", b, " is outside [0, ", dims.lq, "]");
  }
};

}  // namespace salt
