#pragma once
/// \file plan.hpp
/// How much work a mask leaves the engine: the key blocks and (query, key) pairs it will visit, computed
/// from the same block plans the engine runs, without running it. Benchmarks count FLOPs from this, and
/// users can check that a sparse pattern really is sparse.

#include <algorithm>
#include <vector>

#include "detail/micro_kernels.hpp"
#include "detail/sparse_transformer_passes.hpp"
#include "mask/concept.hpp"

namespace salt {

/// Work of one call: blocks are (query tile x key block) tiles; pairs are the query-key pairs inside
/// visited blocks, clipped to the sequence lengths.
struct attention_work {
  index visited_blocks = 0;  ///< (query tile, key block) tiles the engine visits, over all batch items and heads
  index full_blocks = 0;  ///< visited blocks that need no per-pair mask test
  index visited_pairs = 0;  ///< (query, key) pairs inside the visited blocks, clipped to Lq and Lk
};

template <class T, mask_policy Mask>
attention_work plan_work(const Mask& mask, const problem_dims& dims);

namespace detail {

/// Work of the passes a causal Sparse Transformer pattern runs as (sparse_transformer_passes.hpp), for every
/// (batch item, query head): the same per head.
template <class T, class Mask>
attention_work passes_work(const Mask& mask, const problem_dims& dims) {
  using form = sparse_transformer_form<Mask>;
  const index L = dims.lq;
  attention_work w;
  auto add = [&w](const attention_work& part) {
    w.visited_blocks += part.visited_blocks;
    w.full_blocks += part.full_blocks;
    w.visited_pairs += part.visited_pairs;
  };
  if constexpr (std::is_same_v<typename form::pattern, strided>) {
    const index s = form::of(mask).stride;
    add(plan_work<T>(sliding_window{.left = s - 1, .right = 0}, {1, 1, 1, L, L, dims.d, dims.dv}));
    for (const auto& [r0, r1, tokens] : residue_classes{s, L}.groups())
      if (r0 < r1 && tokens > 0)
        add(plan_work<T>(causal<>{.offset = -1}, {1, r1 - r0, r1 - r0, tokens, tokens, dims.d, dims.dv}));
  } else {
    const fixed& f = form::of(mask);
    add(plan_work<T>(fixed{.block = f.block, .summary = 0} & causal<>{}, {1, 1, 1, L, L, dims.d, dims.dv}));
    add(plan_work<T>(earlier_summaries{f.block, f.summary}, {1, 1, 1, L, summary_rows(f, L), dims.d, dims.dv}));
  }
  const index heads = dims.batch * dims.q_heads;
  return {w.visited_blocks * heads, w.full_blocks * heads, w.visited_pairs * heads};
}

}  // namespace detail

/// The work the engine does for `mask` at these sizes with scalar type T (the tile shape depends on it),
/// under the scaled dot product: the causal Sparse Transformer patterns count the passes they run as.
/// Plans every (batch item, query head, query tile) as a call would, without computing anything: O(the
/// plans' runs) time beyond the mask's planning, one plan's storage of memory. The mask is not checked.
template <class T, mask_policy Mask>
attention_work plan_work(const Mask& mask, const problem_dims& dims) {
  if constexpr (detail::runs_as_passes<Mask, dot_product>) {
    if (detail::takes_passes(mask, dims.lq, dims.lk)) return detail::passes_work<T>(mask, dims);
  }
  using shape = detail::tile_shape<T>;
  const index S = shape::query_tile, BK = shape::key_block;
  const index lists = plan_lists_v<Mask>, capacity = (dims.lk + BK - 1) / BK + 1;
  std::vector<block_run> storage(static_cast<std::size_t>(lists * capacity));
  attention_work w;
  for (index b = 0; b < dims.batch; ++b) {
    for (index h = 0; h < dims.q_heads; ++h) {
      for (index q0 = 0; q0 < dims.lq; q0 += S) {
        const index nq = std::min(S, dims.lq - q0);
        block_plan plan(storage.data(), capacity, lists);
        detail::plan_blocks(mask, block_query{q0, q0 + nq, BK, problem_shape{dims.lq, dims.lk, b, h}}, plan);
        for (const block_run& r : plan.runs()) {
          const index blocks = r.last - r.first;
          const index keys = std::min(r.last * BK, dims.lk) - r.first * BK;
          w.visited_blocks += blocks;
          w.full_blocks += r.full ? blocks : 0;
          w.visited_pairs += nq * keys;
        }
      }
    }
  }
  return w;
}

}  // namespace salt
