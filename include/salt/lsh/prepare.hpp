#pragma once
/// \file lsh/prepare.hpp
/// The first three steps of LSH attention, each a parallel loop of independent work items: hash every head's
/// positions (blocks of positions), sort each (head, round) by bucket, and gather the sorted copies of qk and
/// v (blocks of sorted rows) into the workspace, which the engine then reads as an ordinary problem.

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../config.hpp"
#include "../detail/engine.hpp"
#include "../detail/parallel.hpp"
#include "../detail/workspace.hpp"
#include "../mask/key_padding.hpp"
#include "../mask/none.hpp"
#include "../detail/simd.hpp"
#include "../tensor.hpp"
#include "hashing.hpp"
#include "options.hpp"
#include "workspace.hpp"

namespace salt::detail {

/// Whether position p of batch item b is a key: a real position (not model padding) that `padding` keeps.
template <class Padding>
struct lsh_keys {
  const Padding& padding;
  index L;
  bool operator()(index b, index p) const noexcept {
    if (p >= L) return false;
    if constexpr (std::is_same_v<Padding, key_padding>) return p < padding.lengths[static_cast<std::size_t>(b)];
    if constexpr (std::is_same_v<Padding, key_mask>) return padding.valid[static_cast<std::size_t>(b * L + p)] != 0;
    return true;
  }
  /// Whether some sorted row is not a key (then no band block is full without per-element tests).
  bool any_missing(const lsh_shape& s) const noexcept {
    if (s.Lp != s.L) return true;
    if constexpr (std::is_same_v<Padding, no_mask>) return false;
    for (index b = 0; b < s.batch; ++b)
      for (index p = 0; p < s.L; ++p)
        if (!(*this)(b, p)) return true;
    return false;
  }
};

/// Positions per hashing work item: a few matrix products of lsh_hash_block rows, so that one long head
/// still makes many items while each item's products stay whole (the blocks are those of lsh_buckets).
inline constexpr index lsh_hash_item = 4 * lsh_hash_block;

/// Hashes positions [p0, p0 + n) of head bh into ws.hashes (hashed sequences only) and computes their keys'
/// inverse RMS lengths into ws.inv_rms. `rotated` is scratch of lsh_hash_block * rounds * w.
template <class T, class Keys>
void lsh_hash_item_of(const tensor_view<const T>& qk, const lsh_rotations<T>& rot, const lsh_options& opt,
                      const lsh_shape& s, const Keys& keys, index bh, index p0, index n, lsh_workspace<T>& ws,
                      T* rotated) noexcept {
  const index b = bh / s.heads, h = bh % s.heads;
  const head_view<const T> x = qk.head(b, h);  // (L, d)
  std::int32_t* const hashes = ws.hashes.data() + bh * s.rounds * s.L;  // (rounds, L)
  const auto key_valid = [&](index p) { return keys(b, p); };
  for (index q0 = p0; q0 < p0 + n; q0 += lsh_hash_block) {
    const index m = std::min(lsh_hash_block, p0 + n - q0);
    if (s.hashed) lsh_hash_positions(x, q0, m, rot.head(h).data(), opt, key_valid, rotated, hashes);
    lsh_inverse_rms(x.row(q0), m, s.d, x.row_stride, ws.inv_rms.data() + bh * s.L + q0);
  }
}

/// Step 1: every head's buckets and inverse RMS lengths, in blocks of lsh_hash_item positions.
template <class T, class Keys>
void lsh_hash(const tensor_view<const T>& qk, const lsh_rotations<T>& rot, const lsh_options& opt,
              const lsh_shape& s, const Keys& keys, lsh_workspace<T>& ws, int threads) {
  const index blocks = (s.L + lsh_hash_item - 1) / lsh_hash_item, items = s.all_heads() * blocks;
  const index scratch = s.hashed ? lsh_hash_block * s.rounds * opt.rotation_width() : 0;
  parallel_for(
      items, thread_count(threads, items), [&] { return aligned_buffer<T>(scratch); },
      [&](index it, aligned_buffer<T>& rotated) {
        const index p0 = (it % blocks) * lsh_hash_item;
        lsh_hash_item_of(qk, rot, opt, s, keys, it / blocks, p0, std::min(lsh_hash_item, s.L - p0), ws,
                         rotated.data());
      });
}

/// Round r of head bh in sorted order: ws.pos, ws.bucket and ws.where. A sequence that is not hashed keeps
/// its order, its padding keys marked -1.
template <class T, class Keys>
void lsh_sort_item(const lsh_shape& s, const Keys& keys, std::int32_t padding, index bh, index r,
                   lsh_workspace<T>& ws, index* counts) noexcept {
  const index first = bh * s.rows + r * s.Lp, at = (bh * s.rounds + r) * s.L;
  std::int32_t* const pos = ws.pos.data() + first;
  std::int32_t* const bucket = ws.bucket.data() + first;
  index* const where = ws.where.data() + at;  // (L): sorted row of each position, within the head
  if (s.hashed) {
    lsh_sort_round(ws.hashes.data() + at, s.L, s.Lp, padding, r * s.Lp, counts, pos, bucket, where);
    return;
  }
  for (index p = 0; p < s.L; ++p) {
    pos[p] = static_cast<std::int32_t>(p);
    bucket[p] = keys(bh / s.heads, p) ? 0 : -1;
    where[p] = p;
  }
}

/// Step 2: each (head, round) sorted by (bucket, position), one work item each: a counting sort is three
/// passes of O(L + buckets) integer work, against O(L d w) for hashing a round and O(L c d) for attending to
/// it, so splitting it further would buy less than the extra passes cost.
template <class T, class Keys>
void lsh_sort(const lsh_shape& s, const Keys& keys, const lsh_options& opt, lsh_workspace<T>& ws, int threads) {
  const auto padding = static_cast<std::int32_t>(opt.buckets());
  const index items = s.all_heads() * s.rounds, counts = s.hashed ? padding + 2 : 0;
  parallel_for(
      items, thread_count(threads, items), [&] { return aligned_buffer<index>(counts); },
      [&](index it, aligned_buffer<index>& scratch) {
        lsh_sort_item(s, keys, padding, it / s.rounds, it % s.rounds, ws, scratch.data());
      });
}

/// Sorted rows per gathering work item.
inline constexpr index lsh_gather_item = 512;

/// Sorted rows [s0, s1) of head bh copied from qk and v, with their keys' inverse RMS lengths; model
/// padding rows get zeros (never seen as keys, their outputs dropped).
template <class T>
void lsh_gather_rows(const tensor_view<const T>& qk, const tensor_view<const T>& v, const lsh_shape& s, index bh,
                     index s0, index s1, lsh_workspace<T>& ws) noexcept {
  constexpr index ahead = 8;  // rows prefetched ahead: they are read in sorted, hence random, order
  const head_view<const T> x = qk.head(bh / s.heads, bh % s.heads);     // (L, d)
  const head_view<const T> values = v.head(bh / s.heads, bh % s.heads);  // (L, dv)
  const std::int32_t* const pos = ws.pos.data() + bh * s.rows;           // (rows)
  const T* const inv_rms = ws.inv_rms.data() + bh * s.L;                 // (L)
  T* const sorted_qk = ws.q.data() + bh * s.rows * s.d;                  // (rows, d)
  T* const key_scale = ws.key_scale.data() + bh * s.rows;                // (rows)
  T* const sorted_v = ws.v.data() + bh * s.rows * s.dv;                  // (rows, dv)
  for (index r = s0; r < s1; ++r) {
    if (r + ahead < s.rows && pos[r + ahead] < s.L) {
      const index later = pos[r + ahead];
      prefetch_rows<false, const T, 3>(x, later, later + 1);  // wanted a few rows later: first level
      prefetch_rows<false, const T, 3>(values, later, later + 1);
    }
    const index p = pos[r];
    if (p >= s.L) {
      std::fill_n(sorted_qk + r * s.d, s.d, T(0));
      key_scale[r] = T(0);
      std::fill_n(sorted_v + r * s.dv, s.dv, T(0));
      continue;
    }
    key_scale[r] = inv_rms[p];
    copy_row(x.row(p), s.d, sorted_qk + r * s.d);
    copy_row(values.row(p), s.dv, sorted_v + r * s.dv);
  }
}

/// Step 3: the sorted copies, in blocks of lsh_gather_item rows.
template <class T>
void lsh_gather(const tensor_view<const T>& qk, const tensor_view<const T>& v, const lsh_shape& s,
                lsh_workspace<T>& ws, int threads) {
  const index blocks = (s.rows + lsh_gather_item - 1) / lsh_gather_item, items = s.all_heads() * blocks;
  parallel_for(items, thread_count(threads, items), [] { return no_workspace{}; }, [&](index it, no_workspace&) {
    const index s0 = (it % blocks) * lsh_gather_item;
    lsh_gather_rows(qk, v, s, it / blocks, s0, std::min(s0 + lsh_gather_item, s.rows), ws);
  });
}

}  // namespace salt::detail
