#pragma once
/// \file detail/engine_tiles.hpp
/// Which query rows make one tile of the engine, and the key blocks such a tile plans.
///
/// Prefill (long Lq): a tile is query_tile consecutive queries of one head. Decode (a few new queries against a
/// long cache): one head's queries fill a fraction of a tile, and every query head of a grouped-query call
/// would read the same K/V head again. So the query heads that share a K/V head are stacked, head after head
/// (lq rows each), and the stack is cut into tiles: a tile then holds several heads' queries, and each K/V
/// block is read once for all of them (llama.cpp's and vLLM's GQA loop order). A tile is made of segments,
/// one per head it touches; masks and score policies are asked per segment, with that head's position.

#include <algorithm>
#include <limits>
#include <span>

#include "../config.hpp"
#include "../mask/concept.hpp"

namespace salt::detail {

/// The most queries per head for which the engine stacks a K/V group's heads into tiles and cuts the keys
/// into partitions (decode, speculative decoding, chunked prefill); above it each head has its own tiles.
inline constexpr index decode_max_queries = 16;

/// Queries [q0, q0 + n) of query head h, at rows [row, row + n) of their tile.
struct tile_segment {
  index h = 0, q0 = 0, n = 0, row = 0;
};

/// How a call's query rows are stacked into tiles of `tile` rows: each work item holds `packed` query heads
/// (a whole K/V group when decoding, else one) of `lq` queries each, stacked head after head.
struct row_layout {
  index lq = 0, packed = 1, tile = 1;

  /// The layout of a call with these sizes: a K/V group's heads stacked when lq <= decode_max_queries.
  static row_layout of(index lq, index q_heads, index kv_heads, index tile) noexcept {
    const bool decode = lq <= decode_max_queries && kv_heads > 0;
    return {lq, decode ? q_heads / kv_heads : 1, tile};
  }
  bool decodes() const noexcept { return lq <= decode_max_queries; }
  index rows() const noexcept { return lq * packed; }
  index tiles() const noexcept { return (rows() + tile - 1) / tile; }
  /// Rows of tile t.
  index rows_of(index t) const noexcept { return std::min(tile, rows() - t * tile); }

  /// Calls f(tile_segment) for each head's part of tile t of item group `g` (query heads g x packed ...).
  template <class F>
  void for_each_segment(index g, index t, F&& f) const {
    const index r0 = t * tile, r1 = r0 + rows_of(t);
    for (index r = r0; r < r1;) {
      const index q = r % lq, n = std::min(lq - q, r1 - r);
      f(tile_segment{g * packed + r / lq, q, n, r - r0});
      r += n;
    }
  }
};

/// out = the blocks of a or b: full where both plan them full, partial where either plans them otherwise (a
/// block only one head needs is masked, for the other, by its allowed_queries, which is the per-pair truth).
inline void unite_plans(std::span<const block_run> a, std::span<const block_run> b, block_plan& out) noexcept {
  out.clear();
  constexpr index none = std::numeric_limits<index>::max();
  std::size_t i = 0, j = 0;
  index at = 0;
  for (;;) {
    while (i < a.size() && a[i].last <= at) ++i;
    while (j < b.size() && b[j].last <= at) ++j;
    if (i == a.size() && j == b.size()) return;
    const bool in_a = i < a.size() && a[i].first <= at, in_b = j < b.size() && b[j].first <= at;
    if (!in_a && !in_b) {
      at = std::min(i < a.size() ? a[i].first : none, j < b.size() ? b[j].first : none);
      continue;
    }
    index end = none;
    if (i < a.size()) end = std::min(end, in_a ? a[i].last : a[i].first);
    if (j < b.size()) end = std::min(end, in_b ? b[j].last : b[j].first);
    out.add(at, end, in_a && in_b && a[i].full && b[j].full);
    at = end;
  }
}

/// Plan storage for one tile: the mask's `lists` plan lists, then as many again and one more, which a tile of
/// several segments needs to plan a further segment and unite it with the plan so far.
inline index tile_plan_lists(index mask_lists) noexcept { return 2 * mask_lists + 1; }

/// Plans the key blocks of tile t of item group g into plan (whose storage holds tile_plan_lists lists): the
/// union of its segments' plans.
template <class Mask>
void plan_tile(const Mask& mask, const row_layout& layout, index b, index g, index t, index lk, index key_block,
               block_plan& plan) noexcept {
  bool first = true;
  layout.for_each_segment(g, t, [&](const tile_segment& s) {
    const block_query bq{s.q0, s.q0 + s.n, key_block, problem_shape{layout.lq, lk, b, s.h}};
    if (first) {
      plan_blocks(mask, bq, plan);
      first = false;
      return;
    }
    block_plan part = plan.spare(plan_lists_v<Mask> - 1), united = part.spare(plan_lists_v<Mask> - 1);
    plan_blocks(mask, bq, part);
    const auto a = plan.runs(), p = part.runs();
    if (std::equal(a.begin(), a.end(), p.begin(), p.end(), [](const block_run& x, const block_run& y) {
          return x.first == y.first && x.last == y.last && x.full == y.full;
        }))
      return;  // the usual case: a mask that does not depend on the head
    unite_plans(a, p, united);
    plan.clear();
    for (const block_run& r : united.runs()) plan.add(r.first, r.last, r.full);
  });
}

}  // namespace salt::detail
