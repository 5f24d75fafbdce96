#pragma once
/// \file block_mask.hpp
/// Reusable plans: the key blocks every query tile of a call visits, computed once for given sizes and
/// handed to any number of calls as a mask that plans nothing (PyTorch FlexAttention's BlockMask). A new
/// length only means building a new one at run time, never recompiling.
///
///     const auto pattern = salt::sliding_window{.left = 256, .right = 256} | salt::global_tokens{ids};
///     const auto planned = salt::block_mask<float, decltype(pattern)>(pattern, {.lq = L, .lk = L});
///     for (...) salt::attention(q, k, v, planned.mask());   // no planning per call

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "detail/micro_kernels.hpp"
#include "error.hpp"
#include "mask/concept.hpp"

namespace salt {

template <class T, mask_policy Mask>
class block_mask;

/// The mask a block_mask hands to calls: the same pairs as `Mask`, and a plan that is a copy of the stored
/// one. It views the block_mask's storage, which must outlive the calls. A call whose sizes differ from the
/// ones the plans were built for is rejected (salt::error); a caller that asks with another tile geometry
/// (e.g. plan_work for another scalar type) is planned by `Mask` itself.
template <mask_policy Mask>
struct planned_mask_view {
  Mask pattern;                       ///< the planned mask (a copy): it answers allows() and unstored tiles
  const block_run* runs = nullptr;    ///< every tile's runs, one list after another (the block_mask's storage)
  const index* first_run = nullptr;   ///< (batch * heads * tiles + 1): where tile t's runs start
  problem_dims dims;                  ///< the sizes the plans were built for
  /// The geometry of the stored plans: queries per tile, keys per key block, query tiles per head.
  /// @{
  index query_tile = 0, key_block = 0, tiles = 0;
  /// @}

  /// mask_policy: `pattern`'s answer.
  bool allows(index q, index k, const problem_shape& s) const noexcept { return pattern.allows(q, k, s); }
  /// mask_policy: as `Mask`.
  static constexpr bool is_always_full() { return Mask::is_always_full(); }
  /// column_mask: `pattern`'s answer (through `allows` when `Mask` has no allowed_queries).
  query_bits allowed_queries(index k, index q_begin, index count, const problem_shape& s) const noexcept {
    return detail::allowed_queries(pattern, k, q_begin, count, s);
  }

  /// The stored runs of the tile `bq` asks for (one copy, O(runs)); `Mask`'s own plan when `bq` is not one
  /// of the stored tiles.
  void plan(const block_query& bq, block_plan& out) const noexcept {
    const bool stored = bq.block == key_block && bq.q_begin % query_tile == 0 &&
                        bq.q_end == std::min(bq.q_begin + query_tile, dims.lq) && bq.shape.lq == dims.lq &&
                        bq.shape.lk == dims.lk && bq.shape.batch < dims.batch && bq.shape.head < dims.q_heads;
    if (!stored) {
      detail::plan_blocks(pattern, bq, out);
      return;
    }
    const index tile = (bq.shape.batch * dims.q_heads + bq.shape.head) * tiles + bq.q_begin / query_tile;
    for (index r = first_run[tile]; r < first_run[tile + 1]; ++r) out.add(runs[r].first, runs[r].last, runs[r].full);
  }
  /// The pattern's own planning may need spares when a caller asks for a tile that is not stored.
  static constexpr index plan_lists() { return plan_lists_v<Mask>; }

  /// Throws salt::error naming `api` when the call's batch, query heads, Lq or Lk differ from `dims`; then
  /// runs `pattern`'s own check.
  void check(const problem_dims& call, const char* api) const {
    detail::require(call.batch == dims.batch && call.q_heads == dims.q_heads && call.lq == dims.lq && call.lk == dims.lk,
                    api, ": the block_mask was built for batch ", dims.batch, ", ", dims.q_heads, " query heads, lq ",
                    dims.lq, ", lk ", dims.lk, " but the call has batch ", call.batch, ", ", call.q_heads,
                    " query heads, lq ", call.lq, ", lk ", call.lk);
    if constexpr (requires { pattern.check(call, api); }) pattern.check(call, api);
  }
};

/// The block plans of `Mask` for every (batch item, query head, query tile) of calls of the given sizes,
/// in the engine's tile geometry for scalar type T, owned. Building costs what planning inside one call
/// costs (O(visited block runs), after the mask's own checks); memory is one block_run per run of visited
/// blocks. `mask()` is the policy to pass to calls; it views this object.
template <class T, mask_policy Mask>
class block_mask {
 public:
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "salt::block_mask plans float or double calls.");
  /// The mask as stored: without const, so that its view stays trivially copyable (block_mask<T, decltype(m)>
  /// of a const m is common).
  using pattern_type = std::remove_cv_t<Mask>;

  /// Plans `mask` for calls with dims.batch items, dims.q_heads query heads, dims.lq queries and dims.lk keys
  /// (d, dv and kv_heads do not change a plan). The mask is copied; data it views must outlive the calls.
  block_mask(const Mask& mask, const problem_dims& dims) : pattern_(mask), dims_(dims) {
    constexpr const char* api = "salt::block_mask";
    detail::require(dims.batch >= 0 && dims.q_heads >= 0 && dims.lq >= 0 && dims.lk >= 0, api, ": sizes must be >= 0, got batch ",
                    dims.batch, ", ", dims.q_heads, " query heads, lq ", dims.lq, ", lk ", dims.lk);
    if constexpr (requires { mask.check(dims, api); }) mask.check(dims, api);
    const index capacity = (dims.lk + key_block - 1) / key_block + 1, lists = plan_lists_v<Mask>;
    std::vector<block_run> scratch(static_cast<std::size_t>(lists * capacity));
    const index tiles = (dims.lq + query_tile - 1) / query_tile;
    first_run_.reserve(static_cast<std::size_t>(dims.batch * dims.q_heads * tiles + 1));
    first_run_.push_back(0);
    for (index b = 0; b < dims.batch; ++b)
      for (index h = 0; h < dims.q_heads; ++h)
        for (index q0 = 0; q0 < dims.lq; q0 += query_tile) {
          block_plan plan(scratch.data(), capacity, lists);
          const block_query bq{q0, std::min(q0 + query_tile, dims.lq), key_block, problem_shape{dims.lq, dims.lk, b, h}};
          detail::plan_blocks(pattern_, bq, plan);
          runs_.insert(runs_.end(), plan.runs().begin(), plan.runs().end());
          first_run_.push_back(static_cast<index>(runs_.size()));
        }
  }

  /// The mask to pass to calls: it views this block_mask, so none can be taken from a temporary.
  planned_mask_view<pattern_type> mask() const& noexcept {
    return {pattern_, runs_.data(), first_run_.data(), dims_, query_tile, key_block,
            (dims_.lq + query_tile - 1) / query_tile};
  }
  /// On a temporary block_mask: a compile error (the view would outlive the plans).
  template <class Self = block_mask>
  planned_mask_view<pattern_type> mask() const&& noexcept {
    static_assert(sizeof(Self) == 0,
                  "salt::block_mask::mask() views the block_mask's plans: call it on a block_mask held in a variable, "
                  "not on a temporary.");
    return {};
  }

  /// The sizes the plans were built for.
  const problem_dims& dims() const noexcept { return dims_; }
  /// Runs of visited key blocks stored over all tiles.
  index stored_runs() const noexcept { return static_cast<index>(runs_.size()); }

 private:
  static constexpr index query_tile = detail::tile_shape<T>::query_tile;
  static constexpr index key_block = detail::tile_shape<T>::key_block;

  pattern_type pattern_;
  problem_dims dims_;
  std::vector<block_run> runs_;
  std::vector<index> first_run_;
};

}  // namespace salt
