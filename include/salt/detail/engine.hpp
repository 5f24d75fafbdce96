#pragma once
/// \file detail/engine.hpp
/// The one tiled online-softmax engine every softmax kernel runs on. It walks (batch, head, query tile)
/// work items in parallel; for each it visits only the key blocks the mask plans, and never holds more
/// than one (key_block x query_tile) tile of logits.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../config.hpp"
#include "../mask/concept.hpp"
#include "../score/concept.hpp"
#include "../tensor.hpp"
#include "engine_schedule.hpp"
#include "merge_rows.hpp"
#include "micro_kernels.hpp"
#include "parallel.hpp"
#include "workspace.hpp"

namespace salt::detail {

/// Scratch of one thread, sized once per call.
template <class T>
struct engine_workspace {
  using shape = tile_shape<T>;
  aligned_buffer<T> qt;      // (d, query_tile): the query tile, transposed and scaled
  aligned_buffer<T> st;      // (key_block, query_tile): logits, then probabilities, key-major
  aligned_buffer<T> o;       // (query_tile, o_stride): unnormalised output rows
  aligned_buffer<T> m, l, alpha;  // (query_tile): running max, running sum, this block's rescale
  aligned_buffer<T> v_finite;     // (key_block, o_stride): a cut block's values with non-finite entries read as 0
  std::vector<block_run> plan_storage;
  index o_stride = 0, plan_capacity = 0, plan_lists = 0;

  engine_workspace(index d, index dv, index lk, index lists)
      : qt(std::max<index>(d, 1) * shape::query_tile),
        st(shape::key_block * shape::query_tile),
        o(shape::query_tile * round_up(std::max<index>(dv, 1))),
        m(shape::query_tile),
        l(shape::query_tile),
        alpha(shape::query_tile),
        v_finite(shape::key_block * round_up(std::max<index>(dv, 1))),
        plan_storage(static_cast<std::size_t>(lists * ((lk + shape::key_block - 1) / shape::key_block + 1))),
        o_stride(round_up(std::max<index>(dv, 1))),
        plan_capacity((lk + shape::key_block - 1) / shape::key_block + 1),
        plan_lists(lists) {}

  static index round_up(index n) { return (n + shape::N - 1) / shape::N * shape::N; }
};

/// Arguments of one engine run, already checked by the public entry point.
template <class T, class Mask, class Score>
struct engine_problem {
  tensor_view<const T> q, k, v;
  tensor_view<T> out;
  lse_view<T> lse;
  const Mask& mask;
  const Score& score;
  int threads;
};

/// P V for a block the mask cuts and whose values hold NaN or +-Inf, where p = 0 times such a value would
/// still be NaN. The block goes through pv_tile with those entries read as 0, so a row that cannot see
/// them gets the very bits it gets without them; then every allowed pair adds its non-finite entries, so a
/// row that can see one gets NaN or +-Inf as the naive sum would.
template <class T, class Mask>
void add_non_finite_block(const Mask& mask, engine_workspace<T>& ws, const T* st, const head_view<const T>& V,
                          index k0, index nk, index q0, index nq, index rows, const problem_shape& where) {
  constexpr index S = tile_shape<T>::query_tile;
  const index dv = V.cols;
  T* const vf = ws.v_finite.data();
  for (index j = 0; j < nk; ++j) {
    const T* vr = V.row(k0 + j);
    for (index c = 0; c < dv; ++c) vf[j * ws.o_stride + c] = std::isfinite(vr[c]) ? vr[c] : T(0);
  }
  pv_tile<T>(ws.o.data(), ws.o_stride, ws.alpha.data(), st, vf, ws.o_stride, nk, dv, rows);
  for (index j = 0; j < nk; ++j) {
    const T* vr = V.row(k0 + j);
    if (all_finite(vr, 1, dv, dv)) continue;
    for (index i = 0; i < nq; ++i) {
      if (!mask.allows(q0 + i, k0 + j, where)) continue;
      const T p = st[j * S + i];
      T* orow = ws.o.data() + i * ws.o_stride;
      for (index c = 0; c < dv; ++c)
        if (!std::isfinite(vr[c])) orow[c] += p * vr[c];
    }
  }
}

/// Asks for rows [r0, r1) of x to be brought into cache, for reading or for writing: into the second level
/// by default (Locality 2, for data wanted a block of work later), the first with Locality 3.
template <bool Write, class T, int Locality = 2>
void prefetch_rows(const head_view<T>& x, index r0, index r1) noexcept {
#if defined(__GNUC__)
  constexpr index line = 64 / static_cast<index>(sizeof(T));
  for (index r = r0; r < std::min(r1, x.rows); ++r)
    for (index c = 0; c < x.cols; c += line) __builtin_prefetch(x.row(r) + c, Write ? 1 : 0, Locality);
#else
  (void)x, (void)r0, (void)r1;
#endif
}

/// qt (d rows of query_tile) = scale * Q's rows [q0, q0 + nq), transposed; columns nq ... qp N - 1 zero.
/// Square blocks of N queries x N features are transposed in registers: one scalar store per element cost
/// a sparse tile, which visits few key blocks, close to a tenth of its time.
template <class T>
void pack_queries(const head_view<const T>& Q, index q0, index nq, int qp, T scale, T* qt) noexcept {
  constexpr int N = lanes<T>;
  constexpr index S = tile_shape<T>::query_tile;
  const index d = Q.cols;
  index i0 = 0;
  for (; i0 + N <= nq; i0 += N) {
    index c0 = 0;
    for (; c0 + N <= d; c0 += N) scaled_transpose_square<T>(Q.row(q0 + i0) + c0, Q.row_stride, scale, qt + c0 * S + i0, S);
    for (; c0 < d; ++c0)
      for (int u = 0; u < N; ++u) qt[c0 * S + i0 + u] = Q.row(q0 + i0 + u)[c0] * scale;
  }
  for (index i = i0; i < nq; ++i) {
    const T* row = Q.row(q0 + i);
    for (index c = 0; c < d; ++c) qt[c * S + i] = row[c] * scale;
  }
  for (index i = nq; i < qp * N; ++i)
    for (index c = 0; c < d; ++c) qt[c * S + i] = T(0);
}

/// Where a tile's normalised rows go: the call's output rows and LSEs, or a key partition's scratch.
template <class T>
struct tile_rows {
  T* out = nullptr;  ///< the tile's first output row
  index out_stride = 0;
  T* lse = nullptr;  ///< the tile's first LSE (contiguous), or null
};

/// One query tile of one head: plan, visit the planned key blocks in `range`, normalise, write to `dst`.
template <class T, class Mask, class Score>
void run_query_tile(const engine_problem<T, Mask, Score>& pb, index b, index h, index tile, engine_workspace<T>& ws,
                    block_range range, const tile_rows<T>& dst) {
  using shape = tile_shape<T>;
  constexpr index S = shape::query_tile;
  constexpr index BK = shape::key_block;
  constexpr int N = shape::N;
  const index group = pb.q.heads / pb.k.heads;
  const head_view<const T> Q = pb.q.head(b, h), K = pb.k.head(b, h / group), V = pb.v.head(b, h / group);
  const head_view<T> O = pb.out.head(b, h);
  const index d = Q.cols, dv = V.cols, lq = Q.rows, lk = K.rows;
  const index q0 = tile * S, nq = std::min(S, lq - q0);
  const int qp = static_cast<int>((nq + N - 1) / N);
  const index rows = (nq + shape::R - 1) / shape::R * shape::R;
  const problem_shape where{lq, lk, b, h};

  // Pack the tile transposed and pre-scaled; padding queries stay zero.
  // The scale is applied to the packed queries; log2(e) is not folded in with it, because rounding every
  // scaled element (1/sqrt(d) is often a power of two, log2(e) never is) costs 4x the naive float error
  // at logits of 1e4. The softmax converts s - m instead, which is exact near the max, at no measured cost.
  const T scale = Score::uses_dot_product() ? static_cast<T>(pb.score.dot_scale(d)) : T(0);
  if constexpr (Score::uses_dot_product()) pack_queries(Q, q0, nq, qp, scale, ws.qt.data());
  // The next tile's queries and output rows, which the thread most often takes next: between two tiles
  // the key blocks of a sparse pattern (and LSH's sorted rows) break the hardware prefetcher's stream.
  prefetch_rows<false>(Q, q0 + S, q0 + 2 * S);
  prefetch_rows<true>(O, q0 + S, q0 + 2 * S);
  std::fill_n(ws.m.data(), S, -std::numeric_limits<T>::infinity());
  std::fill_n(ws.l.data(), S, T(0));
  std::fill_n(ws.o.data(), S * ws.o_stride, T(0));

  block_plan plan(ws.plan_storage.data(), ws.plan_capacity, ws.plan_lists);
  plan_blocks(pb.mask, block_query{q0, q0 + nq, BK, where}, plan);

  const auto runs = plan.runs();
  index planned = 0;  // blocks of the plan before this run
  for (std::size_t r = 0; r < runs.size() && planned < range.last; ++r) {
    const block_run& run = runs[r];
    const index first = run.first + std::max<index>(range.first - planned, 0);
    const index last = run.first + std::min(run.last - run.first, range.last - planned);
    planned += run.last - run.first;
    for (index kb = first; kb < last; ++kb) {
      const index k0 = kb * BK, nk = std::min(BK, lk - k0);
      // The next block of the plan is requested now: a sparse pattern's jumps (BigBird's random and global
      // blocks, a layout's columns) are misses the hardware prefetcher cannot foresee, and at long lengths they
      // come from memory.
      const index next = kb + 1 < run.last ? kb + 1 : (r + 1 < runs.size() ? runs[r + 1].first : -1);
      if (next >= 0) {
        prefetch_rows<false>(K, next * BK, next * BK + BK);
        prefetch_rows<false>(V, next * BK, next * BK + BK);
      }
      T* st = ws.st.data();
      if constexpr (Score::uses_dot_product()) {
        dot_tile<T>(ws.qt.data(), K.row(k0), K.row_stride, nk, d, qp, st);
      } else {
        std::fill_n(st, nk * S, T(0));
      }
      if constexpr (!Score::is_identity()) pb.score.apply(logit_tile<T>{st, S, q0, k0, nq, nk}, where);
      bool careful_pv = false;
      if constexpr (!Mask::is_always_full()) {
        if (!run.full) {
          // The diagonal (or another mask edge) cuts this block: masked pairs get -inf, hence p = 0. The mask
          // answers for a key and the tile's queries at once, as bits (column_mask), and the select runs a
          // packet at a time along the contiguous query axis: partial blocks cost little more than full ones.
          // The tile's padding queries (past nq) are left as they are; they are never written out.
          const query_bits padding = ~bit_range(0, nq);
          for (index j = 0; j < nk; ++j) mask_logits<T>(st + j * S, allowed_queries(pb.mask, k0 + j, q0, nq, where) | padding, qp);
          // p = 0 times a non-finite value would still be NaN: such blocks take the per-pair path below.
          careful_pv = !all_finite(V.row(k0), nk, dv, V.row_stride);
        }
      }
      softmax_tile<T>(st, nk, qp, ws.m.data(), ws.l.data(), ws.alpha.data());
      if (!careful_pv) {
        pv_tile<T>(ws.o.data(), ws.o_stride, ws.alpha.data(), st, V.row(k0), V.row_stride, nk, dv, rows);
      } else {
        add_non_finite_block(pb.mask, ws, st, V, k0, nk, q0, nq, rows, where);
      }
    }
  }

  // Normalise. A row that saw no key has l = 0: it outputs zeros and LSE = -inf.
  for (index i = 0; i < nq; ++i) {
    const T li = ws.l[i];
    const T inv = li > T(0) ? T(1) / li : (li == T(0) ? T(0) : li);  // NaN stays NaN
    const T* orow = ws.o.data() + i * ws.o_stride;
    T* out = dst.out + i * dst.out_stride;
    for (index c = 0; c < dv; ++c) out[c] = orow[c] * inv;
    if (dst.lse) dst.lse[i] = li == T(0) ? -std::numeric_limits<T>::infinity() : ws.m[i] + std::log(li);
  }
}

/// The rows of the call that tile `t` writes.
template <class T, class Mask, class Score>
tile_rows<T> call_rows(const engine_problem<T, Mask, Score>& pb, const tile_item& t) noexcept {
  const index q0 = t.tile * tile_shape<T>::query_tile;
  const head_view<T> O = pb.out.head(t.b, t.h);
  return {O.row(q0), O.row_stride, pb.lse.data ? pb.lse.head(t.b, t.h) + q0 : nullptr};
}

/// Runs a schedule that cuts tiles (engine_schedule.hpp): every job, then every cut tile's merge.
template <class T, class Mask, class Score>
void run_split_schedule(const engine_problem<T, Mask, Score>& pb, const engine_schedule& schedule, index tiles) {
  constexpr index S = tile_shape<T>::query_tile;
  const index d = pb.q.features, dv = pb.v.features, lk = pb.k.tokens, lq = pb.q.tokens;
  const index row = std::max<index>(dv, 1), part_size = S * (row + 1);  // a partition's rows, then their LSEs
  // Partitions are the schedule's first jobs: job j < parts holds its rows at scratch[j x part_size].
  index parts = 0;
  for (const split_tile& cut : schedule.splits) parts += cut.parts;
  std::vector<T> scratch(static_cast<std::size_t>(parts * part_size));
  auto part_rows = [&](index job) {
    T* rows = scratch.data() + job * part_size;
    return tile_rows<T>{rows, dv, rows + S * row};
  };
  const index jobs = static_cast<index>(schedule.jobs.size());
  parallel_for(
      jobs, thread_count(pb.threads, jobs), [&] { return engine_workspace<T>(d, dv, lk, plan_lists_v<Mask>); },
      [&](index j, engine_workspace<T>& ws) {
        const engine_job& job = schedule.jobs[static_cast<std::size_t>(j)];
        const tile_item t = tile_item::of(job.item, pb.q.heads, tiles);
        run_query_tile(pb, t.b, t.h, t.tile, ws, job.blocks, job.partition ? part_rows(j) : call_rows(pb, t));
      });
  std::vector<const T*> outs(static_cast<std::size_t>(parts)), lses(static_cast<std::size_t>(parts));
  for (index j = 0; j < parts; ++j) outs[static_cast<std::size_t>(j)] = part_rows(j).out, lses[static_cast<std::size_t>(j)] = part_rows(j).lse;
  const index splits = static_cast<index>(schedule.splits.size());
  parallel_for(splits, thread_count(pb.threads, splits), [] { return no_workspace{}; }, [&](index s, no_workspace&) {
    const split_tile& cut = schedule.splits[static_cast<std::size_t>(s)];
    const tile_item t = tile_item::of(cut.item, pb.q.heads, tiles);
    const index nq = std::min(S, lq - t.tile * S);
    const auto first = static_cast<std::size_t>(cut.first_job), parts = static_cast<std::size_t>(cut.parts);
    const lse_parts_view<T> view{{outs.data() + first, parts}, {lses.data() + first, parts}, nq, dv, dv, 1, nullptr};
    const tile_rows<T> dst = call_rows(pb, t);
    merge_rows_by_lse(view, 0, nq, head_view<T>{dst.out, nq, dv, dst.out_stride}, dst.lse);
  });
}

/// Runs the engine over every (batch, query head, query tile), in parallel when OpenMP is on.
/// Each work item is computed the same way whichever thread takes it, so results do not depend on the
/// number of threads.
template <class T, class Mask, class Score>
void run_engine(const engine_problem<T, Mask, Score>& pb) {
  using shape = tile_shape<T>;
  const index tiles = (pb.q.tokens + shape::query_tile - 1) / shape::query_tile;
  const index items = pb.q.batch * pb.q.heads * tiles;
  if (items == 0) return;
  const engine_schedule schedule = schedule_tiles<T>(pb.mask, pb.q.batch, pb.q.heads, pb.q.tokens, pb.k.tokens, pb.threads);
  if (schedule.splits_tiles()) return run_split_schedule(pb, schedule, tiles);
  const index d = pb.q.features, dv = pb.v.features, lk = pb.k.tokens;
  constexpr index lists = plan_lists_v<Mask>;
  parallel_for(
      items, thread_count(pb.threads, items), [&] { return engine_workspace<T>(d, dv, lk, lists); },
      [&](index it, engine_workspace<T>& ws) {
        const tile_item t = tile_item::of(it, pb.q.heads, tiles);
        run_query_tile(pb, t.b, t.h, t.tile, ws, block_range{}, call_rows(pb, t));
      });
}

}  // namespace salt::detail
