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
///
/// Decoding cuts every long tile (split-KV, FlashDecoding): its few tiles (a tile per K/V group and batch item)
/// are often fewer than the threads, and each is a pass over the whole cache.

#include <algorithm>
#include <limits>
#include <vector>

#include "../config.hpp"
#include "../mask/concept.hpp"
#include "engine_tiles.hpp"
#include "micro_kernels.hpp"
#include "parallel.hpp"

namespace salt::detail {

/// Work item `item` of the engine's numbering, (b x groups + g) x tiles + tile, as its coordinates: batch
/// item b, tile `tile` of the query heads stacked in group g (row_layout: the query head g itself when the
/// layout packs one head per group).
struct tile_item {
  index b, g, tile;
  static tile_item of(index item, index groups, index tiles) noexcept {
    const index bg = item / tiles;
    return {bg / groups, bg % groups, item % tiles};
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

/// When a prefill tile is cut: it plans at least min_split_blocks blocks and more than heavy_factor times the
/// mean. Its partitions hold about part_factor times the mean (at least min_part_blocks), at most max_parts of
/// them. A causal mask (at most twice the mean) and every mask that plans the same blocks per tile are never cut.
inline constexpr index min_split_blocks = 16, heavy_factor = 4, part_factor = 2, min_part_blocks = 8, max_parts = 16;
/// When a decode tile is cut (split-KV, "flash decoding"): always once it plans more than decode_part_blocks
/// blocks, into partitions of about that many (1,024 keys: long enough that the merge costs nothing, short
/// enough that one sequence of 32K keys gives 32 items), at most decode_max_parts (a million keys: 64 of 256
/// blocks). A decode call has few tiles, often fewer than threads; the cut is fixed by the plan alone.
inline constexpr index decode_part_blocks = 16, decode_max_parts = 64;
/// The most partitions any tile is cut into.
inline constexpr index max_cut_parts = std::max(max_parts, decode_max_parts);

/// How many partitions a tile of n planned blocks is cut into (1: not cut), given the call's mean per tile.
inline index tile_parts(const row_layout& layout, index n, index items, index total) noexcept {
  if (layout.decodes()) return n > decode_part_blocks ? std::min(decode_max_parts, (n + decode_part_blocks - 1) / decode_part_blocks) : 1;
  if (n < min_split_blocks || n * items <= heavy_factor * total) return 1;
  const index part_blocks = std::max(min_part_blocks, (part_factor * total + items - 1) / items);
  return std::min(max_parts, (n + part_blocks - 1) / part_blocks);
}

/// The schedule of `items` = batch x groups x tiles items (item = (b x groups + g) x tiles + tile, groups =
/// heads / layout.packed) under `mask`, where batch item b has keys_of(b) <= lk keys, counted on `threads`
/// threads (the schedule does not depend on them).
template <class T, class Mask, class KeysOf>
engine_schedule schedule_tiles(const Mask& mask, const row_layout& layout, index batch, index heads, index lk,
                               const KeysOf& keys_of, int threads) {
  using shape = tile_shape<T>;
  constexpr index BK = shape::key_block;
  engine_schedule schedule;
  const index tiles = layout.tiles(), groups = heads / layout.packed, items = batch * groups * tiles;
  const index capacity = (lk + BK - 1) / BK + 1, lists = tile_plan_lists(plan_lists_v<Mask>);
  if (layout.decodes()) {
    if (capacity - 1 <= decode_part_blocks) return schedule;  // no tile could be cut
  } else if (Mask::is_always_full() || capacity - 1 < min_split_blocks || tiles < 2) {
    return schedule;  // nothing could be cut, or nothing to wait for
  }
  // Every item's planned blocks, counted in parallel, in runs of `per` items (a plan takes ~100 ns, less than
  // a dynamically scheduled item costs): a long multi-head call has 10^5 plans to count.
  constexpr index per = 256;
  std::vector<index> blocks(static_cast<std::size_t>(items));
  const auto make = [&] { return std::vector<block_run>(static_cast<std::size_t>(lists * capacity)); };
  const index runs = (items + per - 1) / per;
  parallel_for(runs, thread_count(threads, runs), make, [&](index r, std::vector<block_run>& storage) {
    for (index it = r * per; it < std::min(items, (r + 1) * per); ++it) {
      const tile_item t = tile_item::of(it, groups, tiles);
      block_plan plan(storage.data(), capacity, lists);
      plan_tile(mask, layout, t.b, t.g, t.tile, keys_of(t.b), BK, plan);
      blocks[static_cast<std::size_t>(it)] = plan.blocks();
    }
  });
  index total = 0;
  for (const index n : blocks) total += n;
  std::vector<index> parts(static_cast<std::size_t>(items));
  for (index it = 0; it < items; ++it)
    parts[static_cast<std::size_t>(it)] = tile_parts(layout, blocks[static_cast<std::size_t>(it)], items, total);
  if (std::all_of(parts.begin(), parts.end(), [](index p) { return p == 1; })) return schedule;
  // Partitions first: they are the longest items, and a dynamic schedule that starts them early ends evenly.
  for (index it = 0; it < items; ++it) {
    const index n = blocks[static_cast<std::size_t>(it)], cut = parts[static_cast<std::size_t>(it)];
    if (cut == 1) continue;
    schedule.splits.push_back({it, cut, static_cast<index>(schedule.jobs.size())});
    for (index p = 0; p < cut; ++p) schedule.jobs.push_back({it, {n * p / cut, n * (p + 1) / cut}, true});
  }
  for (index it = 0; it < items; ++it)
    if (parts[static_cast<std::size_t>(it)] == 1) schedule.jobs.push_back({it, {}, false});
  return schedule;
}

/// schedule_tiles for a call whose batch items all have lk keys.
template <class T, class Mask>
engine_schedule schedule_tiles(const Mask& mask, const row_layout& layout, index batch, index heads, index lk,
                               int threads) {
  return schedule_tiles<T>(mask, layout, batch, heads, lk, [lk](index) { return lk; }, threads);
}

}  // namespace salt::detail
