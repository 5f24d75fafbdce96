#pragma once
/// \file mask/key_padding.hpp
/// Key padding: keys past each sequence's valid length (`key_padding`) or flagged off (`key_mask`) are
/// never attended.

#include <algorithm>
#include <cstdint>

#include "../borrowed_span.hpp"
#include "../error.hpp"
#include "capabilities.hpp"
#include "concept.hpp"

namespace salt {

/// Batch item b attends only to its first `lengths[b]` keys: a key_length_mask. The lengths are not copied:
/// they must outlive the call, so `key_padding{lengths}` takes a variable (a vector, an array, a span) and
/// a temporary container does not compile.
struct key_padding {
  borrowed_span<const index> lengths = {};  ///< (batch): valid keys per batch item, viewed

  /// mask_policy: k < lengths[batch].
  bool allows(index, index k, const problem_shape& s) const noexcept { return k < lengths[s.batch]; }
  /// key_length_mask: lengths[batch].
  index valid_keys(const problem_shape& s) const noexcept { return lengths[s.batch]; }
  /// mask_policy: false.
  static constexpr bool is_always_full() { return false; }
  /// column_mask: all `count` queries when k is valid, none otherwise.
  query_bits allowed_queries(index k, index, index count, const problem_shape& s) const noexcept {
    return k < lengths[s.batch] ? detail::bit_range(0, count) : 0;
  }

  /// planned_mask: the blocks of the valid keys, full except the one the length cuts; O(1).
  void plan(const block_query& bq, block_plan& out) const noexcept {
    const index valid = lengths[bq.shape.batch];
    out.add_keys(bq, 0, valid, 0, valid);
  }

  /// Throws salt::error naming `api` unless there is one length per batch item, each in [0, Lk].
  void check(const problem_dims& dims, const char* api) const {
    detail::require(static_cast<index>(lengths.size()) == dims.batch, api, ": key_padding has ", lengths.size(),
                    " lengths for a batch of ", dims.batch);
    for (index b = 0; b < dims.batch; ++b)
      detail::require(lengths[b] >= 0 && lengths[b] <= dims.lk, api, ": key_padding length ", lengths[b],
                      " of batch item ", b, " is outside [0, ", dims.lk, "]");
  }
};

/// Batch item b attends to key k when `valid[b * lk + k]` is non-zero (a per-key flag, as in
/// HuggingFace's attention_mask). The flags are not copied: they must outlive the call, so a temporary
/// container does not compile.
struct key_mask {
  borrowed_span<const std::uint8_t> valid = {};  ///< (batch, lk): flags, viewed

  /// mask_policy: valid[batch * lk + k] != 0.
  bool allows(index, index k, const problem_shape& s) const noexcept { return valid[s.batch * s.lk + k] != 0; }
  /// mask_policy: false.
  static constexpr bool is_always_full() { return false; }

  /// planned_mask: every key block with a valid key, full when all of its keys are; O(Lk) per tile.
  void plan(const block_query& bq, block_plan& out) const noexcept {
    // Per key block: skip when no key is valid, full when every key is; cost O(keys), far below the
    // O(queries * keys * d) the visited blocks cost.
    const std::uint8_t* flags = valid.data() + bq.shape.batch * bq.shape.lk;
    for (index b = 0, nb = bq.key_blocks(); b < nb; ++b) {
      const index k0 = b * bq.block, k1 = std::min(k0 + bq.block, bq.shape.lk);
      index on = 0;
      for (index k = k0; k < k1; ++k) on += flags[k] != 0;
      if (on > 0) out.add(b, b + 1, on == k1 - k0);
    }
  }

  /// Throws salt::error naming `api` unless there are batch * Lk flags.
  void check(const problem_dims& dims, const char* api) const {
    detail::require(static_cast<index>(valid.size()) == dims.batch * dims.lk, api, ": key_mask has ", valid.size(),
                    " flags but batch * lk = ", dims.batch, " * ", dims.lk);
  }
};

}  // namespace salt
