#pragma once
/// \file detail/engine_backward.hpp
/// The exact engine's backward pass (FlashAttention-2's algorithm), the forward's twin: each visited tile's
/// probabilities are recomputed from the saved LSE, P = e^(s - lse), and with D = rowsum(dO o O):
///
///     dV += P^T dO,   dP = dO V^T,   dS = P o (dP - D) o slope,   dQ += scale dS K,   dK += scale dS^T Q
///
/// (slope: d logit / d (scaled q.k), 1 for additive scores; score/concept.hpp). Only the blocks the mask plans
/// are visited, full blocks without a per-pair test, as forward.
///
/// Determinism without atomic sums: a work item is (batch item, K/V head, key partition). It owns dK and dV of its
/// keys, summed over the query heads of its group, and walks every query tile of those heads in order. A tile's dQ
/// takes its partitions' contributions in partition order: partition 0 writes it, partition p adds to it once
/// partition p - 1 has (each tile has a counter of the partitions that have passed it; partitions walk the tiles in
/// the same order, so p runs a tile behind p - 1 and never waits on a later one). How many partitions there are
/// depends on the problem's sizes only (backward_key_parts), so gradients are bit-identical for any thread count,
/// and no partition holds a copy of dQ. (Copies summed at the end cost a 16-partition head at L = 4,096 a third of
/// its time on 16 threads: 64 MiB zeroed, written and read.)
///
/// A logit gradient (score/logit_gradient.hpp) is added where dS is made: a key's entries are owned by that key's
/// partition, which walks the heads of its item in order (and every batch item and head, when one table serves
/// them all: run_engine_backward).

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#include "../config.hpp"
#include "../mask/concept.hpp"
#include "../score/concept.hpp"
#include "../score/logit_gradient.hpp"
#include "../tensor.hpp"
#include "engine_tiles.hpp"
#include "gemm.hpp"
#include "micro_kernels.hpp"
#include "parallel.hpp"
#include "simd.hpp"
#include "workspace.hpp"

namespace salt::detail {

/// Arguments of one backward run, checked by the public entry point: the forward's inputs, its output and
/// LSE, the output's gradient, the three gradients to write, and where to add dS when the caller asks for it.
template <class T, class Mask, class Score>
struct backward_problem {
  tensor_view<const T> q, k, v, out, dout;
  lse_view<const T> lse;
  tensor_view<T> dq, dk, dv;
  const Mask& mask;
  const Score& score;
  int threads;
  logit_gradient<T> dlogits{};  ///< null: not asked for
};

/// Key partitions per (batch item, K/V head): enough work items for backward_min_items threads' worth when
/// there are fewer owners than that, at most backward_max_parts and at most one per key block. Each partition
/// packs the queries and output gradients of every tile it visits again: 64 partitions for one head at
/// L = 4,096 made one thread 1.3-1.6x slower on the device's Xeon than 16 did, and 16 threads no faster.
inline constexpr index backward_min_items = 16, backward_max_parts = 16;
inline index backward_key_parts(index batch, index kv_heads, index key_blocks) noexcept {
  const index owners = batch * kv_heads;
  if (owners <= 0 || owners >= backward_min_items) return 1;
  return std::clamp<index>((backward_min_items + owners - 1) / owners, 1, std::min(backward_max_parts, std::max<index>(key_blocks, 1)));
}

/// Scratch of one backward thread, sized once per call.
template <class T>
struct backward_workspace {
  using shape = tile_shape<T>;
  aligned_buffer<T> qt;     // (d, query_tile): the query tile, transposed and scaled
  aligned_buffer<T> dot;    // (dv, query_tile): the output gradient's tile, transposed
  aligned_buffer<T> st;     // (key_block, query_tile): logits, then probabilities, key-major
  aligned_buffer<T> dst;    // (key_block, query_tile): dP, then dS
  aligned_buffer<T> slope;  // (key_block, query_tile): d logit / d (scaled q.k), for scores that are not additive
  aligned_buffer<T> lse, delta;  // (query_tile): each row's LSE (+inf for rows that see nothing) and D
  aligned_buffer<T> dq;          // (query_tile, d): the tile's dQ over this item's keys
  aligned_buffer<T> dk, dv;      // (part_keys, d) and (part_keys, dv): this item's dK and dV
  std::vector<block_run> plan_storage;
  index plan_capacity = 0, plan_lists = 0;

  backward_workspace(index d, index dv_features, index lk, index part_keys, index lists, bool slopes)
      : qt(std::max<index>(d, 1) * shape::query_tile),
        dot(std::max<index>(dv_features, 1) * shape::query_tile),
        st(shape::key_block * shape::query_tile),
        dst(shape::key_block * shape::query_tile),
        slope(slopes ? shape::key_block * shape::query_tile : 0),
        lse(shape::query_tile),
        delta(shape::query_tile),
        dq(shape::query_tile * std::max<index>(d, 1)),
        dk(part_keys * std::max<index>(d, 1)),
        dv(part_keys * std::max<index>(dv_features, 1)),
        plan_storage(static_cast<std::size_t>(tile_plan_lists(lists) * ((lk + shape::key_block - 1) / shape::key_block + 1))),
        plan_capacity((lk + shape::key_block - 1) / shape::key_block + 1),
        plan_lists(tile_plan_lists(lists)) {}
};

/// Whether every entry of rows [r0, r0 + n) of a head is finite.
template <class T>
bool rows_finite(const head_view<const T>& x, index r0, index n) noexcept {
  return all_finite(x.row(r0), n, x.cols, x.row_stride);
}

/// The per-pair sums of a block whose mask cuts it and whose operands hold NaN or +-Inf: 0 times such a value
/// would still be NaN in the products, so only the allowed pairs are added, one at a time (as the naive sums).
template <class T, class Mask>
void add_block_pairs(const Mask& mask, const problem_shape& where, index q0, index nq, index k0, index nk,
                     const head_view<const T>& Q, const head_view<const T>& K, const head_view<const T>& dO,
                     const T* p, const T* ds, bool dot_terms, backward_workspace<T>& ws, index key0) {
  constexpr index S = tile_shape<T>::query_tile;
  const index d = Q.cols, dv = dO.cols;
  for (index j = 0; j < nk; ++j) {
    T* dkr = ws.dk.data() + (k0 + j - key0) * d;
    T* dvr = ws.dv.data() + (k0 + j - key0) * dv;
    const T* kr = K.row(k0 + j);
    for (index i = 0; i < nq; ++i) {
      if (!mask.allows(q0 + i, k0 + j, where)) continue;
      const T pij = p[j * S + i], dsij = ds[j * S + i];
      const T* dor = dO.row(q0 + i);
      for (index c = 0; c < dv; ++c) dvr[c] += pij * dor[c];
      if (!dot_terms) continue;
      const T* qr = Q.row(q0 + i);
      T* dqr = ws.dq.data() + i * d;
      for (index c = 0; c < d; ++c) dkr[c] += dsij * qr[c];
      for (index c = 0; c < d; ++c) dqr[c] += dsij * kr[c];
    }
  }
}

/// P = e^(s - lse) and dS = P o (dP - D) [o slope] for one block's tile (nk keys, qp query packets), in place in
/// st and dst.
template <class T>
void probabilities_and_ds(T* st, T* dst, const T* slope, index nk, int qp, const T* lse, const T* delta) noexcept {
  using P = packet<T>;
  constexpr int N = lanes<T>;
  constexpr index S = tile_shape<T>::query_tile;
  const P log2e = ei::pset1<P>(T(1.4426950408889634074));
  for (int p = 0; p < qp; ++p) {
    const P l = ei::pload<P>(lse + p * N), D = ei::pload<P>(delta + p * N);
    for (index j = 0; j < nk; ++j) {
      T* s = st + j * S + p * N;
      T* ds = dst + j * S + p * N;
      const P e = pexp2<T>(ei::pmul(ei::psub(ei::pload<P>(s), l), log2e));
      ei::pstore(s, e);
      P g = ei::pmul(e, ei::psub(ei::pload<P>(ds), D));
      if (slope) g = ei::pmul(g, ei::pload<P>(slope + j * S + p * N));
      ei::pstore(ds, g);
    }
  }
}

/// Adds a visited block's dS (nk keys of nq queries, key-major as the engine holds it) to the logit gradient of
/// batch item b and head h, whose rows are query-major as the tables are: square packets of N keys x N queries are
/// transposed in registers and added to N table rows at once (a scalar loop, one strided read per pair, made a
/// one-thread backward 1.33x slower at L = 2,048), the edges one entry at a time. One addition per entry either way.
template <class T>
void add_logit_gradient(const logit_gradient<T>& g, index b, index h, index q0, index nq, index k0, index nk,
                        const T* ds) noexcept {
  using P = packet<T>;
  constexpr int N = lanes<T>;
  constexpr index S = tile_shape<T>::query_tile;
  T* base = g.data + b * g.batch_stride + h * g.head_stride + (g.row_offset + q0) * g.row_stride + k0;
  const index nq_full = nq / N * N, nk_full = nk / N * N;
  for (index i0 = 0; i0 < nq_full; i0 += N) {
    for (index j0 = 0; j0 < nk_full; j0 += N) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"  // PacketBlock of an intrinsic vector type, as Eigen's own
      ei::PacketBlock<P, N> block;
#pragma GCC diagnostic pop
      for (int r = 0; r < N; ++r) block.packet[r] = ei::ploadu<P>(ds + (j0 + r) * S + i0);
      ei::ptranspose(block);  // packet r: query i0 + r against keys j0 ... j0 + N - 1
      for (int r = 0; r < N; ++r) {
        T* row = base + (i0 + r) * g.row_stride + j0;
        ei::pstoreu(row, ei::padd(ei::ploadu<P>(row), block.packet[r]));
      }
    }
  }
  for (index i = 0; i < nq; ++i) {
    T* row = base + i * g.row_stride;
    for (index j = i < nq_full ? nk_full : 0; j < nk; ++j) row[j] += ds[j * S + i];
  }
}

/// Where a key partition puts its dQ: its index `part`, and the call's counters, one per (batch item, query head,
/// tile) of `tiles` tiles, of the partitions that have added their share (null: the call has one partition).
struct dq_order {
  index part = 0;
  std::atomic<index>* passed = nullptr;
  index tiles = 0;
};

/// Adds scale * acc (nq rows of d) to rows [q0, q0 + nq) of dQ in partition order (dq_order): partition 0 writes
/// them, partition p waits until p partitions have passed this tile, adds, and lets the next one in. A tile the
/// partition does not visit (visited false; acc is then not read) adds nothing, but still passes in order.
template <class T>
void add_dq_in_order(const head_view<T>& dQ, index q0, index nq, const T* acc, T scale, bool visited,
                     std::atomic<index>* passed, index part) {
  const index d = dQ.cols;
  if (passed && part > 0) {
    while (passed->load(std::memory_order_acquire) != part) std::this_thread::yield();
  }
  if (part == 0 || visited) {
    for (index i = 0; i < nq; ++i) {
      T* row = dQ.row(q0 + i);
      const T* a = acc + i * d;
      if (!visited) std::fill_n(row, d, T(0));  // partition 0 writes every row, visited or not
      else if (part == 0) for (index c = 0; c < d; ++c) row[c] = scale * a[c];
      else for (index c = 0; c < d; ++c) row[c] += scale * a[c];
    }
  }
  if (passed) passed->store(part + 1, std::memory_order_release);
}

/// One work item: batch item b, K/V head g, key blocks [kb0, kb1), adding its dQ in `order`.
template <class T, class Mask, class Score>
void run_backward_item(const backward_problem<T, Mask, Score>& pb, index b, index g, index kb0, index kb1,
                       const dq_order& order, backward_workspace<T>& ws) {
  using shape = tile_shape<T>;
  constexpr index S = shape::query_tile, BK = shape::key_block;
  constexpr int N = shape::N;
  constexpr bool dot_terms = Score::uses_dot_product();
  constexpr bool slopes = !is_additive_score<Score>();
  const auto K = pb.k.head(b, g), V = pb.v.head(b, g);
  const index d = pb.q.features, dvf = pb.v.features, lq = pb.q.tokens, lk = K.rows;
  const index group = pb.q.heads / pb.k.heads;
  const index key0 = kb0 * BK, key1 = std::min(lk, kb1 * BK);
  const T scale = dot_terms ? static_cast<T>(pb.score.dot_scale(d)) : T(0);
  const T inf = std::numeric_limits<T>::infinity();
  std::fill_n(ws.dk.data(), (key1 - key0) * d, T(0));
  std::fill_n(ws.dv.data(), (key1 - key0) * dvf, T(0));
  const row_layout layout{lq, 1, S};

  for (index h = g * group; h < (g + 1) * group; ++h) {
    const auto Q = pb.q.head(b, h), O = pb.out.head(b, h), dO = pb.dout.head(b, h);
    const T* lse_h = pb.lse.head(b, h);
    const problem_shape where{lq, lk, b, h};
    const auto dQ = pb.dq.head(b, h);
    std::atomic<index>* passed = order.passed ? order.passed + (b * pb.q.heads + h) * order.tiles : nullptr;
    for (index tile = 0; tile < layout.tiles(); ++tile) {
      const index q0 = tile * S, nq = layout.rows_of(tile);
      const int qp = static_cast<int>((nq + N - 1) / N);
      block_plan plan(ws.plan_storage.data(), ws.plan_capacity, ws.plan_lists);
      plan_tile(pb.mask, layout, b, h, tile, lk, BK, plan);
      bool visits = false;
      for (const block_run& r : plan.runs()) visits |= r.first < kb1 && r.last > kb0;
      if (visits) {
        std::fill_n(ws.dq.data(), nq * d, T(0));
        // Q scaled and dO as they are (a scale of 1 is exact), transposed as the forward packs its queries; the
        // padding columns stay zero.
        if constexpr (dot_terms) {
          pack_queries(Q, q0, nq, scale, ws.qt.data());
          for (index c = 0; c < d; ++c) std::fill(ws.qt.data() + c * S + nq, ws.qt.data() + c * S + qp * N, T(0));
        }
        pack_queries(dO, q0, nq, T(1), ws.dot.data());
        for (index c = 0; c < dvf; ++c) std::fill(ws.dot.data() + c * S + nq, ws.dot.data() + c * S + qp * N, T(0));
        // Rows that see nothing (LSE -inf) and the tile's padding get LSE +inf, hence P = 0, and D = 0.
        for (index i = 0; i < qp * N; ++i) {
          ws.lse[i] = i < nq && lse_h[q0 + i] != -inf ? lse_h[q0 + i] : inf;
          T D = 0;
          if (i < nq)
            for (index c = 0; c < dvf; ++c) D += dO.row(q0 + i)[c] * O.row(q0 + i)[c];
          ws.delta[i] = D;
        }
        const bool tile_finite = rows_finite(Q, q0, nq) && rows_finite(dO, q0, nq);
        for (const block_run& run : plan.runs()) {
          for (index kb = std::max(run.first, kb0); kb < std::min(run.last, kb1); ++kb) {
            const index k0 = kb * BK, nk = std::min(BK, lk - k0);
            T* st = ws.st.data();
            T* dst = ws.dst.data();
            if constexpr (dot_terms) dot_tile<T>(ws.qt.data(), K.row(k0), K.row_stride, nk, d, qp, st);
            else std::fill_n(st, nk * S, T(0));
            const logit_tile<T> tile_view{st, S, q0, k0, nq, nk};
            if constexpr (slopes) {
              std::fill_n(ws.slope.data(), nk * S, T(1));
              apply_with_slope(pb.score, tile_view, logit_tile<T>{ws.slope.data(), S, q0, k0, nq, nk}, where);
            } else if constexpr (!Score::is_identity()) {
              pb.score.apply(tile_view, where);
            }
            dot_tile<T>(ws.dot.data(), V.row(k0), V.row_stride, nk, dvf, qp, dst);
            probabilities_and_ds<T>(st, dst, slopes ? ws.slope.data() : nullptr, nk, qp, ws.lse.data(), ws.delta.data());
            bool careful = false;
            if constexpr (!Mask::is_always_full()) {
              if (!run.full) {
                // Masked pairs get P = dS = 0 by a select, never by a product (e^(s - NaN) of a row whose LSE is
                // NaN would still be NaN).
                for (index j = 0; j < nk; ++j) {
                  const query_bits allowed = allowed_queries(pb.mask, k0 + j, q0, nq, where);
                  replace_unset<T>(st + j * S, allowed, qp, T(0));
                  replace_unset<T>(dst + j * S, allowed, qp, T(0));
                }
                careful = !tile_finite || !rows_finite(K, k0, nk) || !rows_finite(V, k0, nk);
              }
            }
            if (pb.dlogits.data) add_logit_gradient(pb.dlogits, b, h, q0, nq, k0, nk, dst);
            if (careful) {
              add_block_pairs(pb.mask, where, q0, nq, k0, nk, Q, K, dO, st, dst, dot_terms, ws, key0);
              continue;
            }
            gemm<T, false, false>(nk, dvf, nq, st, S, dO.row(q0), dO.row_stride, ws.dv.data() + (k0 - key0) * dvf, dvf,
                                  gemm_update::chain);
            if constexpr (dot_terms) {
              gemm<T, false, false>(nk, d, nq, dst, S, Q.row(q0), Q.row_stride, ws.dk.data() + (k0 - key0) * d, d,
                                    gemm_update::chain);
              gemm<T, true, false>(nq, d, nk, dst, S, K.row(k0), K.row_stride, ws.dq.data(), d, gemm_update::chain);
            }
          }
        }
      }
      add_dq_in_order(dQ, q0, nq, ws.dq.data(), scale, visits, passed ? passed + tile : nullptr, order.part);
    }
  }
  const auto dK = pb.dk.head(b, g), dV = pb.dv.head(b, g);
  for (index j = key0; j < key1; ++j) {
    const T* dkr = ws.dk.data() + (j - key0) * d;
    const T* dvr = ws.dv.data() + (j - key0) * dvf;
    std::transform(dkr, dkr + d, dK.row(j), [scale](T x) { return scale * x; });
    std::copy_n(dvr, dvf, dV.row(j));
  }
}

/// Whether two work items of different (batch item, K/V head) would add dS to the same entries of the logit
/// gradient: a table shared across batch items, or across heads of different K/V groups.
template <class T>
bool logit_gradient_shared(const logit_gradient<T>& g, index batch, index kv_heads) noexcept {
  return g.data && ((batch > 1 && g.batch_stride == 0) || (kv_heads > 1 && g.head_stride == 0));
}

/// Runs the backward pass over every (batch item, K/V head, key partition), in parallel when OpenMP is on; items
/// are taken in order, so a partition's predecessor has always been taken before it (dq_order never waits on an
/// item no thread holds). A logit gradient shared across (batch item, K/V head) pairs makes a work item a key
/// partition alone, walking every pair in order: each partition then owns its keys' columns of the table, summed
/// in that order, so the table's gradient is as deterministic as dK (and no item holds a copy of it).
template <class T, class Mask, class Score>
void run_engine_backward(const backward_problem<T, Mask, Score>& pb) {
  using shape = tile_shape<T>;
  constexpr index BK = shape::key_block, S = shape::query_tile;
  const index batch = pb.q.batch, kv_heads = pb.k.heads, lk = pb.k.tokens, lq = pb.q.tokens;
  const index key_blocks = (lk + BK - 1) / BK;
  const bool pairs_in_order = logit_gradient_shared(pb.dlogits, batch, kv_heads);
  const index parts = pairs_in_order ? backward_key_parts(1, 1, key_blocks) : backward_key_parts(batch, kv_heads, key_blocks);
  const index pairs = batch * kv_heads, items = (pairs_in_order ? 1 : pairs) * parts;
  if (items == 0) return;
  const index tiles = (lq + S - 1) / S;
  std::unique_ptr<std::atomic<index>[]> passed;
  if (parts > 1) {
    passed.reset(new std::atomic<index>[static_cast<std::size_t>(batch * pb.q.heads * tiles)]);
    for (index i = 0; i < batch * pb.q.heads * tiles; ++i) passed[static_cast<std::size_t>(i)].store(0, std::memory_order_relaxed);
  }
  const index part_keys = (key_blocks + parts - 1) / parts * BK;
  parallel_for(
      items, thread_count(pb.threads, items),
      [&] { return backward_workspace<T>(pb.q.features, pb.v.features, lk, part_keys, plan_lists_v<Mask>, !is_additive_score<Score>()); },
      [&](index it, backward_workspace<T>& ws) {
        const index part = it % parts;
        const index kb0 = key_blocks * part / parts, kb1 = key_blocks * (part + 1) / parts;
        const dq_order order{part, passed.get(), tiles};
        if (!pairs_in_order) {
          const index bg = it / parts;
          run_backward_item(pb, bg / kv_heads, bg % kv_heads, kb0, kb1, order, ws);
        } else {
          for (index bg = 0; bg < pairs; ++bg) run_backward_item(pb, bg / kv_heads, bg % kv_heads, kb0, kb1, order, ws);
        }
      });
}

}  // namespace salt::detail
