#pragma once
/// \file mask/none.hpp
/// `no_mask`: every query sees every key (dense attention).

#include "capabilities.hpp"
#include "concept.hpp"

namespace salt {

/// Every pair attends. The engine compiles its masking code away for this mask. It is a key_length_mask
/// (every key valid), so every kernel that takes key-only masks takes it.
struct no_mask {
  /// mask_policy: always true.
  bool allows(index, index, const problem_shape&) const noexcept { return true; }
  /// key_length_mask: every key, Lk.
  index valid_keys(const problem_shape& s) const noexcept { return s.lk; }
  /// mask_policy: true, no pair is ever masked.
  static constexpr bool is_always_full() { return true; }
  /// planned_mask: every key block, full; O(1).
  void plan(const block_query& bq, block_plan& out) const noexcept { out.add(0, bq.key_blocks(), true); }
};

}  // namespace salt
