#pragma once
/// \file detail/micro_kernels.hpp
/// The register-blocked inner loops of the exact engine: logits = Qt^T K (dot_tile), the online-softmax
/// update (softmax_tile), and O = alpha * O + P V (pv_tile). Tiles are stored key-major (one row per key,
/// the queries of the tile contiguous), so every loop vectorises across queries or across value features
/// and no transpose is needed on the hot path.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "../config.hpp"
#include "gemm.hpp"
#include "simd.hpp"


namespace salt::detail {

/// Tile geometry for scalar type T on the compiled instruction set.
template <class T>
struct tile_shape {
  static constexpr int N = lanes<T>;
  /// Query packets per tile: the logits of a tile are one panel of detail::gemm (gemm_shape's NP packets,
  /// its MR keys at a time).
  static constexpr int QP = gemm_shape<T>::NP;
  /// P.V step: R query rows times CP value packets of accumulators (16 of 32, or 8 of 16 registers).
  static constexpr int R = (QP * N) % 4 == 0 ? 4 : 2;  // 2 when the tile is 6 doubles (SSE2)
  static constexpr int CP = vector_registers >= 32 ? 4 : 2;
  static constexpr index query_tile = QP * N;  ///< queries per tile
#ifndef SALT_KEY_BLOCK
#define SALT_KEY_BLOCK 64
#endif
  static constexpr index key_block = SALT_KEY_BLOCK;  ///< keys per block: logits tile is key_block x query_tile
  static_assert(query_tile % R == 0, "salt: the query tile must hold whole P.V row groups.");
};

/// Logits of `nk` keys (rows of k, stride k_stride) against the query tile packed in qt (d rows of
/// query_tile, already scaled): st[j][i] = qt[:, i] . k_j, for the first `qp` query packets. This is the
/// product st = K qt, run by detail::gemm's register tiles (keys in tiles of MR rows, then two and one at a
/// time; each logit one chain of multiply-adds over d, whatever the tile).
template <class T>
void dot_tile(const T* qt, const T* k, index k_stride, index nk, index d, int qp, T* st) noexcept {
  constexpr index S = tile_shape<T>::query_tile;
  gemm<T, false, false>(nk, qp * tile_shape<T>::N, d, k, k_stride, qt, S, st, S, gemm_update::overwrite);
}

/// Rows a streaming kernel asks for while it computes on others: up to two runs of `cols` values (of type T, as
/// stored) per row, rows `stride` apart (null: none). A decode tile reads each K and V row once, and one core's hardware prefetcher
/// may not run far enough ahead to cover the memory's latency: the current block's V rows and the next block's
/// K rows are requested into the first-level cache, a few lines with each group of keys whose logits are taken.
/// On one 16-core Xeon (Sapphire Rapids) host that made decode 1.3-1.45x faster on 1 thread and 1.25-1.4x on 16
/// (two rounds, same binary otherwise); on another host of the same kind it changed nothing measurable (three
/// rounds). Requesting a whole block at once instead stalled on the fill buffers (a third of a decode's time).
template <class T>
struct stream_ahead {
  const T* first = nullptr;
  const T* second = nullptr;
  index stride = 0, cols = 0;

  /// Requests rows [j0, j0 + n) of both runs.
  EIGEN_STRONG_INLINE void request(index j0, index n) const noexcept {
#if defined(__GNUC__)
    constexpr index line = 64 / static_cast<index>(sizeof(T));
    for (const T* run : {first, second}) {
      if (!run) continue;
      for (index u = j0; u < j0 + n; ++u)
        for (index c = 0; c < cols; c += line) __builtin_prefetch(run + u * stride + c, 0, 3);
    }
#else
    (void)j0, (void)n;
#endif
  }
};

/// dot_tile for a tile of at most lanes<T> / 2 queries (a decode tile: a K/V group's heads, one or a few new
/// tokens each), whose logits dot_tile would compute a whole packet of queries at a time, mostly padding.
/// Here the dot products run along the features instead: q holds the tile's rows (NQ of them, row-major,
/// scaled, rows past the tile zero), and for each packet of features the NQ query packets meet N / NQ keys'
/// packets in N accumulators, summed across lanes at once (sum_lanes_transposed). st[j][i] as dot_tile's, for
/// i < NQ; the other entries of a key row are left as they are. Features past the last whole packet are added
/// one at a time. K may be stored narrower than T (bf16, fp16, or int8 with `scales`: widens_in_registers), each
/// packet widened or dequantized as it is loaded, to the same values and so the same logits as K widened first.
template <class T, int NQ, class Tk>
void dot_few_rows(const T* q, index q_stride, const Tk* k, index k_stride, index nk, index d, T* st,
                  const stream_ahead<Tk>& ahead, const row_scales& scales) noexcept {
  using P = packet<T>;
  constexpr int N = lanes<T>, KG = N / NQ;
  constexpr index S = tile_shape<T>::query_tile;
  static_assert(NQ >= 1 && N % NQ == 0 && KG >= 2, "salt: dot_few_rows stacks at least two keys per packet");
  const index dp = d / N * N;
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"  // Eigen's own block of vector types, as Eigen does
#endif
  ei::PacketBlock<P, N> acc;
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
  alignas(workspace_alignment) T sums[N];
  for (index j0 = 0; j0 < nk; j0 += KG) {
    const int keys = static_cast<int>(std::min<index>(KG, nk - j0));
    ahead.request(j0, keys);
    SALT_UNROLL
    for (int u = 0; u < N; ++u) acc.packet[u] = ei::pset1<P>(T(0));
    for (index c = 0; c < dp; c += N) {
      P qv[NQ];
      SALT_UNROLL
      for (int i = 0; i < NQ; ++i) qv[i] = ei::ploadu<P>(q + i * q_stride + c);
      SALT_UNROLL
      for (int u = 0; u < KG; ++u) {
        if (u >= keys) break;
        const P kv = pload_stored<T>(k + (j0 + u) * k_stride + c, scales, j0 + u, c);
        SALT_UNROLL
        for (int i = 0; i < NQ; ++i) acc.packet[u * NQ + i] = ei::pmadd(qv[i], kv, acc.packet[u * NQ + i]);
      }
    }
    ei::pstore(sums, sum_lanes_transposed(acc));
    for (int u = 0; u < keys; ++u) {
      const Tk* kr = k + (j0 + u) * k_stride;
      for (int i = 0; i < NQ; ++i) {
        T s = sums[u * NQ + i];
        for (index c = dp; c < d; ++c) s += q[i * q_stride + c] * stored_value<T>(kr + c, scales, j0 + u, c);
        st[(j0 + u) * S + i] = s;
      }
    }
  }
}

/// The stack of dot_few_rows a tile of nq rows takes (the next power of two), or 0 when dot_tile suits it better
/// (more than half a packet of queries).
template <class T>
constexpr int few_rows_stack(index nq) noexcept {
  constexpr int N = lanes<T>;
  for (int s = 1; 2 * s <= N; s *= 2)
    if (nq <= s) return s;
  return 0;
}

/// dot_few_rows for a stack of nq rows (few_rows_stack(nq) > 0).
template <class T, class Tk>
void dot_few_rows(index nq, const T* q, index q_stride, const Tk* k, index k_stride, index nk, index d, T* st,
                  const stream_ahead<Tk>& ahead, const row_scales& scales = {}) noexcept {
  constexpr int N = lanes<T>;
  // Only the stacks of at least two keys per packet exist for this packet size (SSE2's doubles: one row).
  const int stack = few_rows_stack<T>(nq);
  if (stack == 1) return dot_few_rows<T, 1, Tk>(q, q_stride, k, k_stride, nk, d, st, ahead, scales);
  if constexpr (N >= 4) {
    if (stack == 2) return dot_few_rows<T, 2, Tk>(q, q_stride, k, k_stride, nk, d, st, ahead, scales);
  }
  if constexpr (N >= 8) {
    if (stack == 4) return dot_few_rows<T, 4, Tk>(q, q_stride, k, k_stride, nk, d, st, ahead, scales);
  }
  if constexpr (N >= 16) {
    if (stack == 8) return dot_few_rows<T, 8, Tk>(q, q_stride, k, k_stride, nk, d, st, ahead, scales);
  }
}

/// Sets the logits of one key row (qp query packets) to -inf where `allowed` has a 0 bit (bit i: query i).
template <class T>
EIGEN_STRONG_INLINE void mask_logits(T* row, std::uint64_t allowed, int qp) noexcept {
  replace_unset<T>(row, allowed, qp, -std::numeric_limits<T>::infinity());
}

/// Online-softmax update of one tile of logits st (nk keys x qp query packets), in place:
/// m' = max(m, max_j s), alpha = e^(m - m'), p = e^(s - m'), l' = alpha * l + sum_j p.
/// e^(s - m) is computed as 2^((s - m) log2 e), the subtraction exact near the max. A row that has seen
/// no allowed key keeps m = -inf and gets p = 0, alpha = 0 (never NaN from -inf - -inf). A NaN logit
/// makes its p, hence its row, NaN.
template <class T>
void softmax_tile(T* st, index nk, int qp, T* m, T* l, T* alpha) noexcept {
  using P = packet<T>;
  constexpr int N = lanes<T>;
  constexpr index S = tile_shape<T>::query_tile;
  const P log2e = ei::pset1<P>(T(1.4426950408889634074));
  const P minus_inf = ei::pset1<P>(-std::numeric_limits<T>::infinity());
  const P zero = ei::pset1<P>(T(0));
  for (int p = 0; p < qp; ++p) {
    const P m_old = ei::pload<P>(m + p * N);
    P m_new = m_old;
    for (index j = 0; j < nk; ++j) m_new = pmax_nan_first<T>(ei::pload<P>(st + j * S + p * N), m_new);
    const P m_safe = ei::pselect(ei::pcmp_eq(m_new, minus_inf), zero, m_new);
    const P a = pexp2<T>(ei::pmul(ei::psub(m_old, m_safe), log2e));
    P sum = zero;
    for (index j = 0; j < nk; ++j) {
      T* s = st + j * S + p * N;
      const P e = pexp2<T>(ei::pmul(ei::psub(ei::pload<P>(s), m_safe), log2e));
      ei::pstore(s, e);
      sum = ei::padd(sum, e);
    }
    ei::pstore(m + p * N, m_new);
    ei::pstore(alpha + p * N, a);
    ei::pstore(l + p * N, ei::pmadd(a, ei::pload<P>(l + p * N), sum));
  }
}

/// o[i][c0 + ...] = alpha[i] * o[i][...] + sum_j st[j][i] * v_j[...] for R rows from i0, CPn packets; v stored
/// as T or narrower (widened as it is loaded, as in dot_few_rows).
template <class T, int R, int CPn, class Tv>
EIGEN_STRONG_INLINE void pv_step(T* o, index o_stride, const T* alpha, const T* st, const Tv* v, index v_stride,
                                 index nk, const row_scales& scales) noexcept {
  using P = packet<T>;
  constexpr int N = lanes<T>;
  constexpr index S = tile_shape<T>::query_tile;
  P acc[R][CPn];
  SALT_UNROLL
  for (int r = 0; r < R; ++r) {
    const P a = ei::pset1<P>(alpha[r]);
    SALT_UNROLL
    for (int c = 0; c < CPn; ++c) acc[r][c] = ei::pmul(a, ei::pload<P>(o + r * o_stride + c * N));
  }
  for (index j = 0; j < nk; ++j) {
    P vv[CPn];
    SALT_UNROLL
    for (int c = 0; c < CPn; ++c) {
      vv[c] = pload_stored<T>(v + j * v_stride + c * N, scales, j, c * N);
      keep_in_register(vv[c]);
    }
    SALT_UNROLL
    for (int r = 0; r < R; ++r) {
      const P pb = ei::pset1<P>(st[j * S + r]);
      SALT_UNROLL
      for (int c = 0; c < CPn; ++c) acc[r][c] = ei::pmadd(pb, vv[c], acc[r][c]);
    }
  }
  SALT_UNROLL
  for (int r = 0; r < R; ++r)
    SALT_UNROLL
    for (int c = 0; c < CPn; ++c) ei::pstore(o + r * o_stride + c * N, acc[r][c]);
}

template <class T, int CPn, class Tv>
void pv_columns(T* o, index o_stride, const T* alpha, const T* st, const Tv* v, index v_stride, index nk,
                index rows, const row_scales& scales) noexcept {
  constexpr int R = tile_shape<T>::R;
  for (index i = 0; i < rows; i += R)
    pv_step<T, R, CPn, Tv>(o + i * o_stride, o_stride, alpha + i, st + i, v, v_stride, nk, scales);
}

/// o = alpha * o + P^T V over `rows` query rows (a multiple of R) and dv value features; o rows are
/// o_stride apart (a multiple of the packet size, so rows stay aligned). V is stored as T, or narrower where
/// widens_in_registers.
template <class T, class Tv>
void pv_tile(T* o, index o_stride, const T* alpha, const T* st, const Tv* v, index v_stride, index nk, index dv,
             index rows, const row_scales& scales = {}) noexcept {
  constexpr int N = lanes<T>;
  constexpr int CP = tile_shape<T>::CP;
  constexpr index S = tile_shape<T>::query_tile;
  index c = 0;
  for (; c + CP * N <= dv; c += CP * N) pv_columns<T, CP, Tv>(o + c, o_stride, alpha, st, v + c, v_stride, nk, rows, scales.from(c));
  for (; c + N <= dv; c += N) pv_columns<T, 1, Tv>(o + c, o_stride, alpha, st, v + c, v_stride, nk, rows, scales.from(c));
  for (; c < dv; ++c) {  // features past the last whole packet
    for (index i = 0; i < rows; ++i) {
      T acc = alpha[i] * o[i * o_stride + c];
      for (index j = 0; j < nk; ++j) acc += st[j * S + i] * stored_value<T>(v + j * v_stride + c, scales, j, c);
      o[i * o_stride + c] = acc;
    }
  }
}

}  // namespace salt::detail
