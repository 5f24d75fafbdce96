#pragma once
/// \file plan.hpp
/// How much work a mask leaves the engine: the key blocks and (query, key) pairs it will visit, computed
/// from the same block plans the engine runs, without running it. Benchmarks count FLOPs from this, and
/// users can check that a sparse pattern really is sparse.

#include <algorithm>
#include <vector>

#include "detail/micro_kernels.hpp"
#include "mask/concept.hpp"

namespace salt {

/// Work of one call: blocks are (query tile x key block) tiles; pairs are the query-key pairs inside
/// visited blocks, clipped to the sequence lengths.
struct attention_work {
  index visited_blocks = 0;
  index full_blocks = 0;  ///< visited blocks that need no per-pair mask test
  index visited_pairs = 0;
};

/// The work the engine does for `mask` at these sizes with scalar type T (the tile shape depends on it).
template <class T, mask_policy Mask>
attention_work plan_work(const Mask& mask, const problem_dims& dims) {
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
