#pragma once
/// \file mask/none.hpp
/// `no_mask`: every query sees every key (dense attention).

#include "concept.hpp"

namespace salt {

/// Every pair attends. The engine compiles its masking code away for this mask.
struct no_mask {
  bool allows(index, index, const problem_shape&) const noexcept { return true; }
  static constexpr bool is_always_full() { return true; }
  void plan(const block_query& bq, block_plan& out) const noexcept { out.add(0, bq.key_blocks(), true); }
};

}  // namespace salt
