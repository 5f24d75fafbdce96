#pragma once
/// \file detail/engine_schedule.hpp
/// The engine's work items when the mask's tiles are far from equal. A tile whose rows see every key
/// (BigBird's and global_tokens' global rows) costs L / key_block blocks where the others cost a handful: at
/// L = 16,384 one such tile is an eighth of BigBird's work, and however many threads run, the call waits for
/// it. Such a tile is cut into key partitions, each its own work item, which write their rows' normalised
/// output and LSE to scratch; a second loop merges each tile's partitions by LSE, in partition order.
///
/// The cut depends only on the problem (the plans' block counts), never on the thread count, so results stay
/// bit-identical for any number of threads; tiles that are not cut run exactly as they would alone.

#include <algorithm>
#include <limits>
#include <vector>

#include "../config.hpp"
#include "../mask/concept.hpp"
#include "micro_kernels.hpp"
#include "parallel.hpp"

namespace salt::detail {

/// Work item `item` of the engine's numbering, (b x heads + h) x tiles + tile, as its coordinates.
struct tile_item {
  index b, h, tile;
  static tile_item of(index item, index heads, index tiles) noexcept {
    const index bh = item / tiles;
    return {bh / heads, bh % heads, item % tiles};
  }
};

/// Planned blocks [first, last) of a tile, counted in plan order: the whole plan, or one key partition.
struct block_range {
  index first = 0;
  index last = std::numeric_limits<index>::max();
};

/// A (batch, head, query tile) item cut into key partitions, whose rows live in the schedule's scratch.
struct split_tile {
  index item = 0;
  index parts = 0;
  index first_job = 0;  ///< jobs [first_job, first_job + parts) are its partitions, in order
};

/// One work item: a whole tile, or one key partition of a cut tile (the schedule's first jobs).
struct engine_job {
  index item = 0;
  block_range blocks;
  bool partition = false;
};

/// The work of one call. No jobs: every item is one whole tile, run in item order.
struct engine_schedule {
  std::vector<engine_job> jobs;
  std::vector<split_tile> splits;

  bool splits_tiles() const noexcept { return !splits.empty(); }
};

/// When a tile is cut: it plans at least min_split_blocks blocks and more than heavy_factor times the mean.
/// Its partitions hold about part_factor times the mean (at least min_part_blocks), at most max_parts of them.
/// A causal mask (at most twice the mean) and every mask that plans the same blocks per tile are never cut.
inline constexpr index min_split_blocks = 16, heavy_factor = 4, part_factor = 2, min_part_blocks = 8, max_parts = 16;

/// The schedule of `items` = batch x heads x tiles items (item = (b x heads + h) x tiles + tile) under `mask`,
/// counted on `threads` threads (the schedule does not depend on them).
template <class T, class Mask>
engine_schedule schedule_tiles(const Mask& mask, index batch, index heads, index lq, index lk, int threads) {
  using shape = tile_shape<T>;
  constexpr index S = shape::query_tile, BK = shape::key_block;
  engine_schedule schedule;
  if constexpr (Mask::is_always_full()) {
    return schedule;
  } else {
    const index tiles = (lq + S - 1) / S, items = batch * heads * tiles;
    const index capacity = (lk + BK - 1) / BK + 1, lists = plan_lists_v<Mask>;
    if (capacity - 1 < min_split_blocks || tiles < 2) return schedule;  // nothing could be cut, or nothing to wait for
    // Every item's planned blocks, counted in parallel, in runs of `per` items (a plan takes ~100 ns, less than
    // a dynamically scheduled item costs): a long multi-head call has 10^5 plans to count.
    constexpr index per = 256;
    std::vector<index> blocks(static_cast<std::size_t>(items));
    const auto make = [&] { return std::vector<block_run>(static_cast<std::size_t>(lists * capacity)); };
    const index runs = (items + per - 1) / per;
    parallel_for(runs, thread_count(threads, runs), make, [&](index r, std::vector<block_run>& storage) {
      for (index it = r * per; it < std::min(items, (r + 1) * per); ++it) {
        const tile_item t = tile_item::of(it, heads, tiles);
        const index q0 = t.tile * S;
        block_plan plan(storage.data(), capacity, lists);
        plan_blocks(mask, block_query{q0, std::min(q0 + S, lq), BK, problem_shape{lq, lk, t.b, t.h}}, plan);
        index n = 0;
        for (const block_run& run : plan.runs()) n += run.last - run.first;
        blocks[static_cast<std::size_t>(it)] = n;
      }
    });
    index total = 0;
    for (const index n : blocks) total += n;
    auto heavy = [&](index n) { return n >= min_split_blocks && n * items > heavy_factor * total; };
    if (std::none_of(blocks.begin(), blocks.end(), heavy)) return schedule;
    const index part_blocks = std::max(min_part_blocks, (part_factor * total + items - 1) / items);
    // Partitions first: they are the longest items, and a dynamic schedule that starts them early ends evenly.
    for (index it = 0; it < items; ++it) {
      const index n = blocks[static_cast<std::size_t>(it)];
      if (!heavy(n)) continue;
      const index parts = std::min(max_parts, (n + part_blocks - 1) / part_blocks);
      schedule.splits.push_back({it, parts, static_cast<index>(schedule.jobs.size())});
      for (index p = 0; p < parts; ++p) schedule.jobs.push_back({it, {n * p / parts, n * (p + 1) / parts}, true});
    }
    for (index it = 0; it < items; ++it)
      if (!heavy(blocks[static_cast<std::size_t>(it)])) schedule.jobs.push_back({it, {}, false});
    return schedule;
  }
}

}  // namespace salt::detail
