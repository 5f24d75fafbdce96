#pragma once
/// \file detail/engine.hpp
/// The one tiled online-softmax engine every softmax kernel runs on. It walks (batch, head, query tile)
/// work items in parallel; for each it visits only the key blocks the mask plans, and never holds more
/// than one (key_block x query_tile) tile of logits.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../mask/concept.hpp"
#include "../precision.hpp"
#include "../score/concept.hpp"
#include "../score/sinks.hpp"
#include "../tensor.hpp"
#include "engine_schedule.hpp"
#include "engine_tiles.hpp"
#include "merge_rows.hpp"
#include "micro_kernels.hpp"
#include "parallel.hpp"
#include "workspace.hpp"

namespace salt::detail {

/// Scratch of one thread, sized once per call. T is the compute type.
template <class T>
struct engine_workspace {
  using shape = tile_shape<T>;
  aligned_buffer<T> qt;      // (d, query_tile): the query tile, transposed and scaled
  aligned_buffer<T> qr;      // (query_tile, d): a decode tile's rows, scaled (dot_few_rows)
  aligned_buffer<T> st;      // (key_block, query_tile): logits, then probabilities, key-major
  aligned_buffer<T> o;       // (query_tile, o_stride): unnormalised output rows
  aligned_buffer<T> m, l, alpha;  // (query_tile): running max, running sum, this block's rescale
  aligned_buffer<T> ones;         // (query_tile): the rescale of a block's second run of rows (paged caches)
  aligned_buffer<T> v_finite;     // (key_block, o_stride): a cut block's values with non-finite entries read as 0
  aligned_buffer<T> k_wide, v_wide;  // (key_block, k_stride / o_stride): a block of a cache stored narrower than T
  aligned_buffer<T> out_row;         // (o_stride): an output row before it is rounded to a narrower storage type
  std::vector<block_run> plan_storage;
  index o_stride = 0, k_stride = 0, plan_capacity = 0, plan_lists = 0;

  /// widen: whether K and V are stored in a type other than T (then their blocks may be widened here).
  engine_workspace(index d, index dv, index lk, index lists, bool widen = false)
      : qt(std::max<index>(d, 1) * shape::query_tile),
        qr(std::max<index>(d, 1) * shape::query_tile),
        st(shape::key_block * shape::query_tile),
        o(shape::query_tile * round_up(std::max<index>(dv, 1))),
        m(shape::query_tile),
        l(shape::query_tile),
        alpha(shape::query_tile),
        ones(shape::query_tile),
        v_finite(shape::key_block * round_up(std::max<index>(dv, 1))),
        k_wide(widen ? shape::key_block * round_up(std::max<index>(d, 1)) : 0),
        v_wide(widen ? shape::key_block * round_up(std::max<index>(dv, 1)) : 0),
        out_row(round_up(std::max<index>(dv, 1))),
        plan_storage(static_cast<std::size_t>(tile_plan_lists(lists) * ((lk + shape::key_block - 1) / shape::key_block + 1))),
        o_stride(round_up(std::max<index>(dv, 1))),
        k_stride(round_up(std::max<index>(d, 1))),
        plan_capacity((lk + shape::key_block - 1) / shape::key_block + 1),
        plan_lists(tile_plan_lists(lists)) {
    std::fill_n(ones.data(), shape::query_tile, T(1));
  }

  static index round_up(index n) { return (n + shape::N - 1) / shape::N * shape::N; }
};

/// Arguments of one engine run, already checked by the public entry point. S is the storage type of Q and the
/// output (precision.hpp); the engine computes in accumulator_t<S>, in which the LSE is. K and V are strided
/// views, or a paged cache (paged_view, kv_cache.hpp) whose sequences have lengths of their own.
template <class S, class Mask, class Score, class KV = tensor_view<const S>>
struct engine_problem {
  using compute = accumulator_t<S>;
  tensor_view<const S> q;
  KV k, v;
  tensor_view<S> out;
  lse_view<compute> lse;
  const Mask& mask;
  const Score& score;
  int threads;
};

/// The most keys any sequence of a K/V view has (plans and workspaces are sized for it).
template <class T>
index longest_keys(const tensor_view<const T>& kv) noexcept {
  return kv.tokens;
}
template <class KV>
index longest_keys(const KV& kv) noexcept {
  return kv.max_tokens();
}

/// The element type a head of K or V stores (int8 for a quantized head).
template <class Head>
using stored_t = std::remove_const_t<std::remove_pointer_t<decltype(std::remove_cvref_t<Head>::data)>>;

/// Rows [k0, k0 + nk) of one K or V head as the micro-kernels read them: the cache's own rows (one strided run,
/// or one per page the block spans) when it stores T, or 16-bit values that the micro-kernels widen as they load
/// them (widens_in_registers); else the block widened (exactly) or dequantized (value * scale, quantized.hpp) once
/// into scratch, one run of T. Either way the values reaching the arithmetic are the same.
template <class T, class Head>
struct block_rows {
  using stored = stored_t<Head>;
  static constexpr bool readable = widens_in_registers<T, stored>;
  const Head& x;
  index k0 = 0, nk = 0;
  const T* wide = nullptr;  // the widened block, or null: read in place
  index wide_stride = 0;

  /// Calls f(rows, row_stride, j, n) for each run of rows [j, j + n) of the block: rows of T, or of the stored
  /// type when read in place (f is generic over the two).
  template <class F>
  EIGEN_STRONG_INLINE void for_each_run(F&& f) const {
    if constexpr (readable) {
      if (!wide) {
        for (index j = 0; j < nk;) {
          const index n = std::min(nk - j, x.run_from(k0 + j));
          f(x.row(k0 + j), x.row_stride, j, n);
          j += n;
        }
        return;
      }
    }
    f(wide, wide_stride, index{0}, nk);
  }
  /// Whether row() may be asked: the rows are in T, stored so or widened.
  bool has_rows() const noexcept { return std::is_same_v<T, stored> || wide != nullptr; }
  /// Row j of the block (has_rows()).
  const T* row(index j) const noexcept {
    if constexpr (std::is_same_v<T, stored>) return x.row(k0 + j);
    else return wide + j * wide_stride;
  }
};

/// The scales of rows r, r + 1, ... of x as the micro-kernels take them: those of a quantized head, none otherwise.
template <class Head>
row_scales scales_of(const Head& x, index r) noexcept {
  if constexpr (requires { x.scales; }) return {x.scales.row(r), x.scales.row_stride, x.group, 0};
  else return (void)x, (void)r, row_scales{};
}

/// The block [k0, k0 + nk) of x as block_rows: in place when it stores T, or when `in_place` and the
/// micro-kernels can widen (or dequantize) its type in registers, a packet never straddling two scales; else
/// widened into `scratch` (rows `stride` apart).
template <class T, class Head>
block_rows<T, Head> read_block(const Head& x, index k0, index nk, T* scratch, index stride, bool in_place) noexcept {
  if constexpr (std::is_same_v<T, stored_t<Head>>) {
    (void)scratch, (void)stride, (void)in_place;
    return {x, k0, nk};
  } else {
    bool whole_packets = true;
    if constexpr (requires { x.scales; }) whole_packets = x.group % lanes<T> == 0;
    if (block_rows<T, Head>::readable && in_place && whole_packets) return {x, k0, nk};
    for (index j = 0; j < nk; ++j) {
      if constexpr (requires { x.scales; }) dequantize_row(x.row(k0 + j), x.scales.row(k0 + j), x.group, x.cols, scratch + j * stride);
      else widen_row(x.row(k0 + j), x.cols, scratch + j * stride);
    }
    return {x, k0, nk, scratch, stride};
  }
}

/// P V for a block the mask cuts and whose values hold NaN or +-Inf, where p = 0 times such a value would
/// still be NaN. The block goes through pv_tile with those entries read as 0, so a row that cannot see
/// them gets the very bits it gets without them; then every allowed pair adds its non-finite entries, so a
/// row that can see one gets NaN or +-Inf as the naive sum would.
template <class T, class Head, class Mask>
void add_non_finite_block(const Mask& mask, engine_workspace<T>& ws, const T* st, const block_rows<T, Head>& V,
                          index rows, const row_layout& layout, const tile_item& t, index lk) {
  constexpr index S = tile_shape<T>::query_tile;
  const index dv = V.x.cols, k0 = V.k0, nk = V.nk;
  T* const vf = ws.v_finite.data();
  for (index j = 0; j < nk; ++j) {
    const T* vr = V.row(j);
    for (index c = 0; c < dv; ++c) vf[j * ws.o_stride + c] = std::isfinite(vr[c]) ? vr[c] : T(0);
  }
  pv_tile<T>(ws.o.data(), ws.o_stride, ws.alpha.data(), st, vf, ws.o_stride, nk, dv, rows);
  for (index j = 0; j < nk; ++j) {
    const T* vr = V.row(j);
    if (all_finite(vr, 1, dv, dv)) continue;
    layout.for_each_segment(t.g, t.tile, [&](const tile_segment& s) {
      const problem_shape where{layout.lq, lk, t.b, s.h};
      for (index i = 0; i < s.n; ++i) {
        if (!mask.allows(s.q0 + i, k0 + j, where)) continue;
        const T p = st[j * S + s.row + i];
        T* orow = ws.o.data() + (s.row + i) * ws.o_stride;
        for (index c = 0; c < dv; ++c)
          if (!std::isfinite(vr[c])) orow[c] += p * vr[c];
      }
    });
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

/// Columns [0, nq) of qt (d rows of query_tile) = scale * Q's rows [q0, q0 + nq), transposed (and widened to T
/// when Q is stored narrower: the same products, so the same bits as T queries holding the widened values).
/// Square blocks of N queries x N features are transposed in registers: one scalar store per element cost
/// a sparse tile, which visits few key blocks, close to a tenth of its time.
template <class T, class Stored>
void pack_queries(const head_view<const Stored>& Q, index q0, index nq, T scale, T* qt) noexcept {
  constexpr int N = lanes<T>;
  constexpr index S = tile_shape<T>::query_tile;
  const index d = Q.cols;
  index i0 = 0;
  if constexpr (std::is_same_v<T, Stored>) {  // narrower queries take the loop below: one tile per tile, not per block
    for (; i0 + N <= nq; i0 += N) {
      index c0 = 0;
      for (; c0 + N <= d; c0 += N) scaled_transpose_square<T>(Q.row(q0 + i0) + c0, Q.row_stride, scale, qt + c0 * S + i0, S);
      for (; c0 < d; ++c0)
        for (int u = 0; u < N; ++u) qt[c0 * S + i0 + u] = Q.row(q0 + i0 + u)[c0] * scale;
    }
  }
  for (index i = i0; i < nq; ++i) {
    const Stored* row = Q.row(q0 + i);
    for (index c = 0; c < d; ++c) qt[c * S + i] = static_cast<T>(row[c]) * scale;
  }
}

/// Adds query head h's attention sink (score/sinks.hpp) to a finished row: its denominator gains e^sink, so
/// lse' = log(e^lse + e^sink) and the row scales by e^(lse - lse'). A row that saw no key (lse -inf) keeps its
/// zeros and gets LSE sink; a NaN LSE stays NaN.
template <class T, class Score>
void add_sink(const Score& score, index h, T* out, index dv, T& lse) noexcept {
  if constexpr (has_sinks<Score>) {
    const T sink = static_cast<T>(score.sink_logit(h));
    const T top = std::max(lse, sink);
    if (top == -std::numeric_limits<T>::infinity()) return;  // no key and a sink of -inf: the row sees nothing
    const T merged = top + std::log(std::exp(lse - top) + std::exp(sink - top));
    const T w = std::exp(lse - merged);
    for (index c = 0; c < dv; ++c) out[c] *= w;
    lse = merged;
  } else {
    (void)score, (void)h, (void)out, (void)dv, (void)lse;
  }
}

/// Where a tile's normalised rows go: a key partition's scratch (tile row r at out + r * out_stride, its LSE
/// at lse[r]), or, when out is null, the call's own output rows and LSEs.
template <class T>
struct tile_rows {
  T* out = nullptr;
  index out_stride = 0;
  T* lse = nullptr;
};

/// One segment's output rows in the call, and their LSEs (null when not wanted).
template <class S, class Mask, class Score, class KV>
auto call_rows(const engine_problem<S, Mask, Score, KV>& pb, index b, const tile_segment& s) noexcept {
  using T = accumulator_t<S>;
  const head_view<S> O = pb.out.head(b, s.h);
  return std::pair<head_view<S>, T*>{head_view<S>{O.row(s.q0), s.n, O.cols, O.row_stride},
                                     pb.lse.data ? pb.lse.head(b, s.h) + s.q0 : nullptr};
}

/// Where a finished output row is built in the compute type T: the output row itself when it is stored in T,
/// else `scratch`, which finish_row then rounds into it.
template <class T, class S>
T* row_in_compute_type(S* out, T* scratch) noexcept {
  if constexpr (std::is_same_v<T, S>) {
    (void)scratch;
    return out;
  } else {
    (void)out;
    return scratch;
  }
}
template <class T, class S>
void finish_row(const T* row, index n, S* out) noexcept {
  if constexpr (!std::is_same_v<T, S>) narrow_row(row, n, out);
  else (void)row, (void)n, (void)out;
}

/// The element type a K or V view stores.
template <class KV>
using kv_element_t = stored_t<decltype(std::declval<const KV&>().head(0, 0))>;

/// A workspace for a problem: compute-type scratch, with room to widen K and V blocks stored narrower.
template <class S, class Mask, class Score, class KV>
auto make_workspace(const engine_problem<S, Mask, Score, KV>& pb) {
  using T = accumulator_t<S>;
  constexpr bool widens = !std::is_same_v<kv_element_t<KV>, T>;
  return engine_workspace<T>(pb.q.features, pb.v.features, longest_keys(pb.k), plan_lists_v<Mask>, widens);
}

/// One tile (row_layout): plan, visit the planned key blocks in `range`, normalise, write to `dst`.
template <class Stored, class Mask, class Score, class KV, class T = accumulator_t<Stored>>
void run_query_tile(const engine_problem<Stored, Mask, Score, KV>& pb, const row_layout& layout, const tile_item& t,
                    engine_workspace<T>& ws, block_range range, const tile_rows<T>& dst) {
  using shape = tile_shape<T>;
  constexpr index S = shape::query_tile;
  constexpr index BK = shape::key_block;
  constexpr int N = shape::N;
  const index group = pb.q.heads / pb.k.heads, first_head = t.g * layout.packed;
  const auto K = pb.k.head(t.b, first_head / group), V = pb.v.head(t.b, first_head / group);
  const index d = pb.q.features, dv = V.cols, lk = K.rows;
  const index nq = layout.rows_of(t.tile);
  const int qp = static_cast<int>((nq + N - 1) / N);
  const index rows = (nq + shape::R - 1) / shape::R * shape::R;
  auto where = [&](const tile_segment& s) { return problem_shape{layout.lq, lk, t.b, s.h}; };

  // Pack the tile transposed and pre-scaled; padding queries stay zero.
  // The scale is applied to the packed queries; log2(e) is not folded in with it, because rounding every
  // scaled element (1/sqrt(d) is often a power of two, log2(e) never is) costs 4x the naive float error
  // at logits of 1e4. The softmax converts s - m instead, which is exact near the max, at no measured cost.
  const T scale = Score::uses_dot_product() ? static_cast<T>(pb.score.dot_scale(d)) : T(0);
  // A decode tile of at most half a packet of rows takes its logits along the features (dot_few_rows), its rows
  // kept as they are; prefill tiles, and their last tile whatever its rows, always through dot_tile.
  const int few_rows = layout.decodes() ? few_rows_stack<T>(nq) : 0;
  if constexpr (Score::uses_dot_product()) {
    if (few_rows > 0) {
      layout.for_each_segment(t.g, t.tile, [&](const tile_segment& s) {
        const auto Q = pb.q.head(t.b, s.h);
        for (index i = 0; i < s.n; ++i)
          for (index c = 0; c < d; ++c) ws.qr[(s.row + i) * d + c] = static_cast<T>(Q.row(s.q0 + i)[c]) * scale;
      });
      std::fill(ws.qr.data() + nq * d, ws.qr.data() + few_rows * d, T(0));
    } else {
      layout.for_each_segment(t.g, t.tile, [&](const tile_segment& s) {
        pack_queries(pb.q.head(t.b, s.h), s.q0, s.n, scale, ws.qt.data() + s.row);
      });
      for (index c = 0; c < d; ++c) std::fill(ws.qt.data() + c * S + nq, ws.qt.data() + c * S + qp * N, T(0));
    }
  }
  if (!layout.decodes()) {
    // The next tile's queries and output rows, which the thread most often takes next: between two tiles
    // the key blocks of a sparse pattern (and LSH's sorted rows) break the hardware prefetcher's stream.
    const index q0 = t.tile * S;
    prefetch_rows<false>(pb.q.head(t.b, first_head), q0 + S, q0 + 2 * S);
    prefetch_rows<true>(pb.out.head(t.b, first_head), q0 + S, q0 + 2 * S);
  }
  std::fill_n(ws.m.data(), S, -std::numeric_limits<T>::infinity());
  std::fill_n(ws.l.data(), S, T(0));
  std::fill_n(ws.o.data(), S * ws.o_stride, T(0));

  block_plan plan(ws.plan_storage.data(), ws.plan_capacity, ws.plan_lists);
  plan_tile(pb.mask, layout, t.b, t.g, t.tile, lk, BK, plan);

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
      // A decode tile streams through a contiguous cache, which the hardware prefetcher follows: requesting
      // every line of the next block there only stalls on the fill buffers (a third of the time of a decode).
      const index next = kb + 1 < run.last ? kb + 1 : (r + 1 < runs.size() ? runs[r + 1].first : -1);
      if (next >= 0 && !(layout.decodes() && next == kb + 1)) {
        prefetch_rows<false>(K, next * BK, next * BK + BK);
        prefetch_rows<false>(V, next * BK, next * BK + BK);
      }
      T* st = ws.st.data();
      // A decode tile reads a 16-bit cache in place, each packet widened as it is loaded (its bytes are read once;
      // on the device's Xeon that made a bf16 decode 1.5x float's speed on 1 thread, against 1.4x through scratch).
      // Prefill tiles widen each block into scratch first: P.V loads every V row once per group of query rows,
      // and widening each load cost prefill 10% (0.87x float's speed, against 0.96x).
      const auto vb = read_block(V, k0, nk, ws.v_wide.data(), ws.o_stride, few_rows > 0);
      if constexpr (Score::uses_dot_product()) {
        read_block(K, k0, nk, ws.k_wide.data(), ws.k_stride, few_rows > 0).for_each_run([&](const auto* k, index stride, index j, index n) {
          using Tk = std::remove_cv_t<std::remove_pointer_t<decltype(k)>>;
          if (few_rows > 0) {
            // While the logits of this run are taken: its V rows, and the next block's K rows when the next block
            // follows in the same strided run (one K and V stride), are requested (stream_ahead). Blocks widened
            // into scratch have been read already.
            stream_ahead<Tk> ahead{};
            if constexpr (std::is_same_v<Tk, stored_t<decltype(K)>>) {
              const bool streams = V.run_from(k0 + j) >= n && K.row_stride == V.row_stride;
              const bool next_follows = n == nk && next == kb + 1 && K.run_from(k0) >= nk + std::min(BK, lk - next * BK);
              ahead = {streams ? V.row(k0 + j) : nullptr, streams && next_follows ? K.row(next * BK) : nullptr,
                       K.row_stride, std::max(d, dv)};
            }
            dot_few_rows<T>(nq, ws.qr.data(), d, k, stride, n, d, st + j * S, ahead,
                            std::is_same_v<Tk, T> ? row_scales{} : scales_of(K, k0 + j));
          } else if constexpr (std::is_same_v<Tk, T>) {  // always so: prefill tiles read T rows
            dot_tile<T>(ws.qt.data(), k, stride, n, d, qp, st + j * S);
          }
        });
      } else {
        std::fill_n(st, nk * S, T(0));
      }
      if constexpr (!Score::is_identity()) {
        layout.for_each_segment(t.g, t.tile, [&](const tile_segment& s) {
          pb.score.apply(logit_tile<T>{st + s.row, S, s.q0, k0, s.n, nk}, where(s));
        });
      }
      bool careful_pv = false;
      if constexpr (!Mask::is_always_full()) {
        if (!run.full) {
          // The diagonal (or another mask edge) cuts this block: masked pairs get -inf, hence p = 0. The mask
          // answers for a key and the tile's queries at once, as bits (column_mask), and the select runs a
          // packet at a time along the contiguous query axis: partial blocks cost little more than full ones.
          // The tile's padding queries (past nq) are left as they are; they are never written out.
          const query_bits padding = ~bit_range(0, nq);
          for (index j = 0; j < nk; ++j) {
            query_bits allowed = padding;
            layout.for_each_segment(t.g, t.tile, [&](const tile_segment& s) {
              allowed |= allowed_queries(pb.mask, k0 + j, s.q0, s.n, where(s)) << s.row;
            });
            mask_logits<T>(st + j * S, allowed, qp);
          }
          // p = 0 times a non-finite value would still be NaN: such blocks take the per-pair path below.
          // int8 read in place is checked dequantized: its scales, not its values, may be non-finite.
          const auto checked = vb.has_rows() || !std::is_same_v<stored_t<decltype(V)>, std::int8_t>
                                   ? vb
                                   : read_block(V, k0, nk, ws.v_wide.data(), ws.o_stride, false);
          checked.for_each_run([&](const auto* v, index stride, index, index n) {
            if constexpr (std::is_same_v<std::remove_cv_t<std::remove_pointer_t<decltype(v)>>, std::int8_t>) (void)v, (void)stride, (void)n;
            else careful_pv |= !all_finite(v, n, dv, stride);
          });
        }
      }
      softmax_tile<T>(st, nk, qp, ws.m.data(), ws.l.data(), ws.alpha.data());
      if (!careful_pv) {
        // A block over two pages is two products; the second continues the first's sums (alpha 1: exact), so
        // a paged cache gives the bits of a contiguous one.
        vb.for_each_run([&](const auto* v, index stride, index j, index n) {
          using Tv = std::remove_cv_t<std::remove_pointer_t<decltype(v)>>;
          pv_tile<T>(ws.o.data(), ws.o_stride, j == 0 ? ws.alpha.data() : ws.ones.data(), st + j * S, v, stride, n, dv,
                     rows, std::is_same_v<Tv, T> ? row_scales{} : scales_of(V, k0 + j));
        });
      } else {
        add_non_finite_block(pb.mask, ws, st, vb.has_rows() ? vb : read_block(V, k0, nk, ws.v_wide.data(), ws.o_stride, false),
                             rows, layout, t, lk);
      }
    }
  }

  // Normalise. A row that saw no key has l = 0: it outputs zeros and LSE = -inf.
  layout.for_each_segment(t.g, t.tile, [&](const tile_segment& s) {
    const auto [call_out, call_lse] = call_rows(pb, t.b, s);
    for (index i = 0; i < s.n; ++i) {
      const index row = s.row + i;
      const T li = ws.l[row];
      const T inv = li > T(0) ? T(1) / li : (li == T(0) ? T(0) : li);  // NaN stays NaN
      const T* orow = ws.o.data() + row * ws.o_stride;
      T* out = dst.out ? dst.out + row * dst.out_stride : row_in_compute_type(call_out.row(i), ws.out_row.data());
      T* lse = dst.out ? dst.lse + row : (call_lse ? call_lse + i : nullptr);
      for (index c = 0; c < dv; ++c) out[c] = orow[c] * inv;
      T row_lse = li == T(0) ? -std::numeric_limits<T>::infinity() : ws.m[row] + std::log(li);
      if (!dst.out) {  // a partition's rows stay in T, and get the sink after the merge
        add_sink(pb.score, s.h, out, dv, row_lse);
        finish_row(out, dv, call_out.row(i));
      }
      if (lse) *lse = row_lse;
    }
  });
}

/// Runs a schedule that cuts tiles (engine_schedule.hpp): every job, then every cut tile's merge.
template <class Stored, class Mask, class Score, class KV>
void run_split_schedule(const engine_problem<Stored, Mask, Score, KV>& pb, const row_layout& layout,
                        const engine_schedule& schedule) {
  using T = accumulator_t<Stored>;
  constexpr index S = tile_shape<T>::query_tile;
  const index dv = pb.v.features, groups = pb.q.heads / layout.packed;
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
      jobs, thread_count(pb.threads, jobs), [&] { return make_workspace(pb); },
      [&](index j, engine_workspace<T>& ws) {
        const engine_job& job = schedule.jobs[static_cast<std::size_t>(j)];
        const tile_item t = tile_item::of(job.item, groups, layout.tiles());
        run_query_tile(pb, layout, t, ws, job.blocks, job.partition ? part_rows(j) : tile_rows<T>{});
      });
  // Each merged row is built in T (a row of scratch when the output is stored narrower), gets the sink, and is
  // written once.
  struct merge_scratch {
    explicit merge_scratch(index features) : row(static_cast<std::size_t>(features)) {}
    std::vector<const T*> pointers = std::vector<const T*>(2 * max_cut_parts);
    std::vector<T> row;
  };
  const index splits = static_cast<index>(schedule.splits.size());
  parallel_for(
      splits, thread_count(pb.threads, splits), [&] { return merge_scratch(row); },
      [&](index c, merge_scratch& ms) {
        const split_tile& cut = schedule.splits[static_cast<std::size_t>(c)];
        const tile_item t = tile_item::of(cut.item, groups, layout.tiles());
        const auto n = static_cast<std::size_t>(cut.parts);
        const std::span<const T*> outs(ms.pointers.data(), n), lses(ms.pointers.data() + n, n);
        layout.for_each_segment(t.g, t.tile, [&](const tile_segment& s) {
          for (std::size_t p = 0; p < n; ++p) {
            const tile_rows<T> part = part_rows(cut.first_job + static_cast<index>(p));
            outs[p] = part.out + s.row * dv, lses[p] = part.lse + s.row;
          }
          const auto [out, lse] = call_rows(pb, t.b, s);
          const lse_parts_view<T> view{outs, lses, s.n, dv, dv, 1, nullptr};
          for (index i = 0; i < s.n; ++i) {
            T* merged = row_in_compute_type(out.row(i), ms.row.data());
            T row_lse;
            merge_row_by_lse(view, i, merged, &row_lse);
            add_sink(pb.score, s.h, merged, dv, row_lse);
            finish_row(merged, dv, out.row(i));
            if (lse) lse[i] = row_lse;
          }
        });
      });
}

/// Runs the engine over every tile of the call (row_layout), in parallel when OpenMP is on.
/// Each work item is computed the same way whichever thread takes it, so results do not depend on the
/// number of threads.
template <class Stored, class Mask, class Score, class KV>
void run_engine(const engine_problem<Stored, Mask, Score, KV>& pb) {
  using T = accumulator_t<Stored>;
  using shape = tile_shape<T>;
  const row_layout layout = row_layout::of(pb.q.tokens, pb.q.heads, pb.k.heads, shape::query_tile);
  const index tiles = layout.tiles(), groups = pb.q.heads / layout.packed;
  const index items = pb.q.batch * groups * tiles;
  if (items == 0) return;
  const index lk = longest_keys(pb.k);
  const auto keys_of = [&](index b) { return pb.k.head(b, 0).rows; };
  const engine_schedule schedule = schedule_tiles<T>(pb.mask, layout, pb.q.batch, pb.q.heads, lk, keys_of, pb.threads);
  if (schedule.splits_tiles()) return run_split_schedule(pb, layout, schedule);
  parallel_for(
      items, thread_count(pb.threads, items), [&] { return make_workspace(pb); },
      [&](index it, engine_workspace<T>& ws) {
        run_query_tile(pb, layout, tile_item::of(it, groups, tiles), ws, block_range{}, tile_rows<T>{});
      });
}

}  // namespace salt::detail
