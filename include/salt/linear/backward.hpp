#pragma once
/// \file linear/backward.hpp
/// The steps of linear attention's backward (linear_backward.hpp drives them): for one K/V head and the query
/// heads that read it, dQ, dK and dV of out_i = f_i N_i / f_i Z_i, with f_i the query's scaled features and
/// N_i = sum_j w_ij phi(k_j) v_j^T, Z_i = sum_j w_ij phi(k_j) over the keys it sees (weights against the
/// reference of its state, linear/state.hpp). With a_i = dout_i / den_i and b_i = -(dout_i . out_i) / den_i:
///
///     gradient by f_i        g_i = N_i a_i + Z_i b_i
///     gradient by phi(k_j)   sum over the queries i that see j of w_ij f_i (v_j . a_i + b_i)
///     gradient by v_j        sum over the queries i that see j of w_ij (f_i . phi(k_j)) a_i
///
/// and the map's backward takes the features' gradients to q and k. Non-causal: one state, and G = sum_i f_i
/// [a_i | b_i] over every query of the group, read back by each key. Causal: a forward sweep over query chunks
/// (the state of the earlier chunks, the chunk's own keys through the masked C x C scores, as the forward)
/// gives dQ and keeps each row's [a | b] and reference; a reverse sweep carries G over the later chunks, so
/// each chunk's keys read G and their own chunk's scores. Every step is a detail::gemm.
///
/// Stabilisation. A row's output is unchanged by scaling its features (so the query's scale drops, as in the
/// forward) or by scaling every key it sees by one factor. A row's reference r_i is the forward's: the state's,
/// raised at a key of the chunk whose scale passes it by the margin. The state of earlier chunks reaches the
/// row times exp(r_state - r_i) <= 1, a key of its chunk times exp(s_j - r_i) <= exp(margin). G holds the
/// later rows at the smallest of their references, rho: adding a row scales it by exp(rho - r_i) <= 1, and a
/// key reads G times exp(s_j - rho) <= exp(margin). Nothing overflows; what underflows weighs less than the
/// rounding of what it joins.
///
/// Non-finite values. Masked pairs are selected to zero, never multiplied: a chunk whose features, values or
/// row gradients hold NaN or +-Inf takes its in-chunk products over the visible pairs only, so a NaN reaches
/// only the gradients that depend on it.

#include <algorithm>
#include <cmath>
#include <limits>

#include "../config.hpp"
#include "../detail/gemm.hpp"
#include "../detail/simd.hpp"
#include "../detail/workspace.hpp"
#include "../tensor.hpp"
#include "feature_map.hpp"
#include "workspace.hpp"

namespace salt::detail {

/// One thread's buffers for the backward of one call. C = chunk, rows of a chunk; `fwd` holds the state and
/// the chunk's features as in the forward.
template <class T>
struct linear_backward_workspace {
  linear_workspace<T> fwd;
  index d, ab;                    // ab = dv + 1: [a | b] and [S | z] and [v | 1] are (., dv + 1)
  aligned_buffer<T> sz;           // (m, ab): the state [S | z] the chunk reads
  aligned_buffer<T> gh;           // (m, ab): G = sum f_i [a_i | b_i] over the rows read back so far
  aligned_buffer<T> vs;           // (C, ab): the chunk's values and a 1
  aligned_buffer<T> scores, dscores;  // (C, C): w_ij f_i . phi(k_j) and w_ij (v_j . a_i + b_i), visible pairs
  aligned_buffer<T> gf;           // (C, m): gradients by the chunk's features
  aligned_buffer<T> dx, dval;     // (C, d), (C, dv): a chunk's key and value gradients before they are added
  aligned_buffer<T> rows_ab, rows_ref;  // (Lq, ab), (Lq): each query's [a | b] and reference, one head
  aligned_buffer<T> alpha;        // (C): exp(r_state - r_i) per row of the chunk

  linear_backward_workspace(index chunk, index m, index d_, index dv, index lq)
      : fwd(chunk, m, dv), d(d_), ab(dv + 1), sz(m * (dv + 1)), gh(m * (dv + 1)), vs(chunk * (dv + 1)),
        scores(chunk * chunk), dscores(chunk * chunk), gf(chunk * m), dx(chunk * d_), dval(chunk * dv),
        rows_ab(lq * (dv + 1)), rows_ref(lq), alpha(chunk) {}
};

/// [a | b] of one row from its denominator, dout and out; zeros under the forward's guard (a row whose
/// denominator is below the smallest normal output zeros, which do not move with the inputs).
template <class T>
void row_gradient(T den, const T* dout, const T* out, index dv, T* ab) noexcept {
  if (std::abs(den) < std::numeric_limits<T>::min()) {
    std::fill_n(ab, dv + 1, T(0));
    return;
  }
  T dot = 0;
  for (index c = 0; c < dv; ++c) {
    dot += dout[c] * out[c];
    ab[c] = dout[c] / den;
  }
  ab[dv] = -dot / den;
}

/// The map's backward for n rows from r0 of x: features f (n, m), their gradient g (n, m, overwritten) -> dx
/// (n, d; row stride lddx).
template <class T, class Map>
void map_back(const Map& map, const head_view<const T>& x, index r0, index n, index m, const T* f, T* g, T* dx,
              index lddx) {
  map.backward(feature_input<T>(x.row(r0), n, x.cols, Eigen::OuterStride<>(x.row_stride)),
               feature_input<T>(f, n, m, Eigen::OuterStride<>(m)), feature_output<T>(g, n, m, Eigen::OuterStride<>(m)),
               feature_output<T>(dx, n, x.cols, Eigen::OuterStride<>(lddx)));
}

/// w.vs = [v | 1] of the n values from row j0.
template <class T>
void stage_values(linear_backward_workspace<T>& w, const head_view<const T>& v, index j0, index n) noexcept {
  const index dv = w.ab - 1;
  for (index j = 0; j < n; ++j) {
    std::copy_n(v.row(j0 + j), dv, w.vs.data() + j * w.ab);
    w.vs[j * w.ab + dv] = T(1);
  }
}

/// w.sz = [S | z] of the forward state in w.fwd.
template <class T>
void copy_state(linear_backward_workspace<T>& w) noexcept {
  const auto& f = w.fwd;
  for (index l = 0; l < f.m; ++l) {
    std::copy_n(f.state.data() + l * f.width, f.dv, w.sz.data() + l * w.ab);
    w.sz[l * w.ab + f.dv] = f.z[l];
  }
}

/// Gradients of the n keys from j0 (features in w.fwd.phi_k, scales in ck) from G, the later rows, at
/// reference rho: the feature gradients into w.gf and the value gradients into w.dval, times exp(s_j - rho)
/// (1 for maps without a log scale). Needs w.vs staged.
template <class T, class Map>
void keys_from_rows(linear_backward_workspace<T>& w, index n, T rho) {
  const index m = w.fwd.m, dv = w.ab - 1;
  gemm<T, false, true>(n, m, w.ab, w.vs.data(), w.ab, w.gh.data(), w.ab, w.gf.data(), m, gemm_update::overwrite);
  gemm<T, false, false>(n, dv, m, w.fwd.phi_k.data(), m, w.gh.data(), w.ab, w.dval.data(), dv, gemm_update::overwrite);
  if constexpr (Map::log_scaled()) {
    for (index j = 0; j < n; ++j) {
      const T s = w.fwd.ck[j];
      const T u = s == -std::numeric_limits<T>::infinity() || rho == std::numeric_limits<T>::infinity()
                      ? T(0) : std::exp(s - rho);
      for (index l = 0; l < m; ++l) w.gf[j * m + l] = u == T(0) ? T(0) : w.gf[j * m + l] * u;
      for (index c = 0; c < dv; ++c) w.dval[j * dv + c] = u == T(0) ? T(0) : w.dval[j * dv + c] * u;
    }
  } else {
    (void)rho;
  }
}

/// Adds the key gradients of the chunk in w (feature gradients in w.gf, value gradients in w.dval) to rows
/// [j0, j0 + n) of dk and dv, through the map's backward.
template <class T, class Map>
void add_key_gradients(const Map& map, linear_backward_workspace<T>& w, const head_view<const T>& k, index j0,
                       index n, const head_view<T>& dk, const head_view<T>& dv) {
  const index m = w.fwd.m, d = w.d, dvc = w.ab - 1;
  map_back(map, k, j0, n, m, w.fwd.phi_k.data(), w.gf.data(), w.dx.data(), d);
  for (index j = 0; j < n; ++j) {
    T* dkr = dk.row(j0 + j);
    T* dvr = dv.row(j0 + j);
    for (index c = 0; c < d; ++c) dkr[c] += w.dx[j * d + c];
    for (index c = 0; c < dvc; ++c) dvr[c] += w.dval[j * dvc + c];
  }
}

/// Keys [j0, j1) that every row of the group reads through G (non-causal keys; causal keys before the
/// diagonal), a chunk at a time: their gradients added to dk and dv.
template <class T, class Map>
void keys_before(const Map& map, linear_backward_workspace<T>& w, const head_view<const T>& k,
                 const head_view<const T>& v, index j0, index j1, T rho, const head_view<T>& dk, const head_view<T>& dv) {
  const index C = w.fwd.chunk, m = w.fwd.m;
  for (index j = j0; j < j1; j += C) {
    const index n = std::min(C, j1 - j);
    map_rows(map, k, j, n, m, w.fwd.phi_k.data(), w.fwd.ck.data());
    stage_values(w, v, j, n);
    keys_from_rows<T, Map>(w, n, rho);
    add_key_gradients(map, w, k, j, n, dk, dv);
  }
}

/// One query chunk of the causal form and its keys: queries [i0, i0 + rows), keys [a, a + nk), query i0 + i
/// seeing local keys below seen(i).
struct causal_grad_chunk {
  index i0, rows, a, nk, diag;
  index seen(index i) const noexcept { return std::clamp<index>(i + diag + 1, 0, nk); }
};

/// c (+)= op(a) b over the chunk's visible pairs only, for a (rows, nk) the chunk's scores or their gradients
/// (row stride C). Transposed (keys' side): c (nk, cols) += a^T b, b (rows, cols); else c (rows, cols) += a b,
/// b (nk, cols). One GEMM when every operand is finite; otherwise the visible pairs one by one, so that a NaN
/// of a pair nobody sees stays out.
template <bool Transposed, class T>
void visible_product(const causal_grad_chunk& ch, bool finite, const T* a, index C, const T* b, index ldb, index cols,
                     T* c, index ldc) {
  if (finite) {
    if constexpr (Transposed) gemm<T, true, false>(ch.nk, cols, ch.rows, a, C, b, ldb, c, ldc, gemm_update::chain);
    else gemm<T, false, false>(ch.rows, cols, ch.nk, a, C, b, ldb, c, ldc, gemm_update::chain);
    return;
  }
  for (index i = 0; i < ch.rows; ++i)
    for (index j = 0, seen = ch.seen(i); j < seen; ++j) {
      const T aij = a[i * C + j];
      T* to = Transposed ? c + j * ldc : c + i * ldc;
      const T* from = Transposed ? b + i * ldb : b + j * ldb;
      for (index x = 0; x < cols; ++x) to[x] += aij * from[x];
    }
}


/// x . y over n entries, in order.
template <class T>
T row_dot(const T* x, const T* y, index n) noexcept {
  T s = 0;
  for (index l = 0; l < n; ++l) s += x[l] * y[l];
  return s;
}

/// Each row's reference (into refs) and w.alpha = exp(r_state - r_i): the state's reference, raised at a key
/// of the chunk whose scale passes it by the margin, as the forward raises it (1 and no references for maps
/// without a log scale). Returns the reference after the chunk's last key.
template <class T, class Map>
T row_references(linear_backward_workspace<T>& w, const causal_grad_chunk& ch, T* refs) noexcept {
  if constexpr (Map::log_scaled()) {
    state_reference<T> r = w.fwd.ref;
    const T before = r.ref;
    index j = 0;
    auto advance = [&](index to) {
      for (; j < to; ++j)
        if (r.passed_by(w.fwd.ck[j])) r.ref = w.fwd.ck[j];
    };
    for (index i = 0; i < ch.rows; ++i) {
      advance(ch.seen(i));
      refs[i] = r.ref;
      w.alpha[i] = r.ref == before ? T(1) : std::exp(before - r.ref);
    }
    advance(ch.nk);
    return r.ref;
  } else {
    for (index i = 0; i < ch.rows; ++i) refs[i] = T(0), w.alpha[i] = T(1);
    return T(0);
  }
}

/// Scales the visible pairs of a (rows, nk; row stride C) by the key's weight against its row's reference,
/// exp(s_j - r_i) (maps with a log scale), and zeroes the masked pairs: selected, never multiplied.
template <class T, class Map>
void weigh_visible(linear_backward_workspace<T>& w, const causal_grad_chunk& ch, T* a, const T* refs) noexcept {
  const index C = w.fwd.chunk;
  for (index i = 0; i < ch.rows; ++i) {
    T* row = a + i * C;
    const index seen = ch.seen(i);
    if constexpr (Map::log_scaled()) {
      for (index j = 0; j < seen; ++j) {
        const T s = w.fwd.ck[j];
        row[j] = s == -std::numeric_limits<T>::infinity() ? T(0) : row[j] * std::exp(s - refs[i]);
      }
    } else {
      (void)refs;
    }
    std::fill(row + seen, row + ch.nk, T(0));
  }
}

/// The chunk's visible scores w_ij f_i . phi(k_j) into w.scores (rows, nk; row stride C), masked pairs zero.
/// Needs the chunk's features; refs are the rows' references.
template <class T, class Map>
void chunk_scores(linear_backward_workspace<T>& w, const causal_grad_chunk& ch, const T* refs) {
  const index C = w.fwd.chunk, m = w.fwd.m;
  gemm<T, false, true>(ch.rows, ch.nk, m, w.fwd.phi_q.data(), m, w.fwd.phi_k.data(), m, w.scores.data(), C,
                       gemm_update::overwrite);
  weigh_visible<T, Map>(w, ch, w.scores.data(), refs);
}

/// G += the chunk's rows f_i [a_i | b_i], at the smallest reference of G's rows and the chunk's rows that see
/// a key (G and the rows scaled down to it; rows that see nothing have [a | b] = 0 and are left out of the
/// reference). Returns G's new reference. The chunk's query features are scaled in place.
template <class T, class Map>
T join_rows(linear_backward_workspace<T>& w, const causal_grad_chunk& ch, const T* refs, const T* ab, T rho) {
  const index m = w.fwd.m;
  T* fq = w.fwd.phi_q.data();
  if constexpr (Map::log_scaled()) {
    constexpr T inf = std::numeric_limits<T>::infinity();
    T low = rho;
    for (index i = 0; i < ch.rows; ++i)
      if (refs[i] != -inf) low = std::min(low, refs[i]);
    if (low < rho && rho != inf) {
      const T f = std::exp(low - rho);
      for (index e = 0; e < m * w.ab; ++e) w.gh[e] *= f;
    }
    for (index i = 0; i < ch.rows; ++i) {
      const T beta = refs[i] == -inf ? T(0) : std::exp(low - refs[i]);
      for (index l = 0; l < m; ++l) fq[i * m + l] = beta == T(0) ? T(0) : fq[i * m + l] * beta;
    }
    rho = low;
  }
  gemm<T, true, false>(m, w.ab, ch.rows, fq, m, ab, w.ab, w.gh.data(), w.ab, gemm_update::chain);
  return rho;
}

/// The chunk's visible score gradients from its rows' [a | b] (row stride w.ab): w.dscores, as chunk_scores.
template <class T, class Map>
void chunk_score_gradients(linear_backward_workspace<T>& w, const causal_grad_chunk& ch, const T* ab, const T* refs) {
  const index C = w.fwd.chunk;
  gemm<T, false, true>(ch.rows, ch.nk, w.ab, ab, w.ab, w.vs.data(), w.ab, w.dscores.data(), C, gemm_update::overwrite);
  weigh_visible<T, Map>(w, ch, w.dscores.data(), refs);
}

/// Whether the chunk's in-chunk products may run as GEMMs: its features, values and rows' [a | b] all finite.
template <class T>
bool chunk_finite(const linear_backward_workspace<T>& w, const causal_grad_chunk& ch, const T* ab) noexcept {
  const index m = w.fwd.m;
  return all_finite(w.fwd.phi_q.data(), ch.rows, m, m) && all_finite(w.fwd.phi_k.data(), ch.nk, m, m) &&
         all_finite(w.vs.data(), ch.nk, w.ab, w.ab) && all_finite(ab, ch.rows, w.ab, w.ab);
}

/// The views of one K/V head's backward and one of its query heads.
template <class T>
struct linear_grad_views {
  head_view<const T> q, out, dout;
  head_view<T> dq;
};

/// The non-causal backward of one K/V head (keys [0, len)) and its `group` query heads, heads(h) giving query
/// head h's views: dq of each written, the keys' gradients added to dk and dv.
template <class T, class Map, class Heads>
void noncausal_backward(const Map& map, linear_backward_workspace<T>& w, const head_view<const T>& k,
                        const head_view<const T>& v, const head_view<T>& dk, const head_view<T>& dv, index len,
                        index group, const Heads& heads) {
  auto& f = w.fwd;
  const index C = f.chunk, m = f.m;
  f.reset_state();
  for (index j = 0; j < len; j += C) absorb_keys(map, f, k, v, j, std::min(C, len - j));
  copy_state(w);
  std::fill_n(w.gh.data(), m * w.ab, T(0));
  for (index h = 0; h < group; ++h) {
    const linear_grad_views<T> x = heads(h);
    for (index i0 = 0; i0 < x.q.rows; i0 += C) {
      const index n = std::min(C, x.q.rows - i0);
      map_rows(map, x.q, i0, n, m, f.phi_q.data(), f.cq.data());
      T* ab = w.rows_ab.data();
      for (index i = 0; i < n; ++i) {
        const T den = row_dot(f.phi_q.data() + i * m, f.z.data(), m);
        row_gradient(den, x.dout.row(i0 + i), x.out.row(i0 + i), w.ab - 1, ab + i * w.ab);
      }
      gemm<T, false, true>(n, m, w.ab, ab, w.ab, w.sz.data(), w.ab, w.gf.data(), m, gemm_update::overwrite);
      gemm<T, true, false>(m, w.ab, n, f.phi_q.data(), m, ab, w.ab, w.gh.data(), w.ab, gemm_update::chain);
      map_back(map, x.q, i0, n, m, f.phi_q.data(), w.gf.data(), x.dq.row(i0), x.dq.row_stride);
    }
  }
  keys_before(map, w, k, v, 0, len, f.ref.ref, dk, dv);
}

/// The causal backward of one query head, its rows' gradients written into x.dq and its keys' added to dk and
/// dv: query i sees keys j <= i + shift, j < len. A forward sweep over the chunks, then a reverse one.
template <class T, class Map>
void causal_backward(const Map& map, linear_backward_workspace<T>& w, const linear_grad_views<T>& x,
                     const head_view<const T>& k, const head_view<const T>& v, const head_view<T>& dk,
                     const head_view<T>& dv, index shift, index len) {
  auto& f = w.fwd;
  const index C = f.chunk, m = f.m, rows_total = x.q.rows, before = std::clamp<index>(shift, 0, len);
  constexpr T inf = std::numeric_limits<T>::infinity();
  auto chunk_at = [&](index i0) {
    const index rows = std::min(C, rows_total - i0);
    const index a = std::clamp<index>(i0 + shift, 0, len), b = std::clamp<index>(i0 + rows + shift, 0, len);
    return causal_grad_chunk{i0, rows, a, b - a, i0 + shift - a};
  };
  auto load_chunk = [&](const causal_grad_chunk& ch) {
    map_rows(map, x.q, ch.i0, ch.rows, m, f.phi_q.data(), f.cq.data());
    if (ch.nk > 0) map_rows(map, k, ch.a, ch.nk, m, f.phi_k.data(), f.ck.data());
    stage_values(w, v, ch.a, ch.nk);
  };

  // Forward: each chunk's rows from the state of the keys before it and the chunk's own keys.
  f.reset_state();
  absorb_range(map, f, k, v, 0, before);
  for (index i0 = 0; i0 < rows_total; i0 += C) {
    const causal_grad_chunk ch = chunk_at(i0);
    load_chunk(ch);
    T* refs = w.rows_ref.data() + i0;
    T* ab = w.rows_ab.data() + i0 * w.ab;
    const T top = row_references<T, Map>(w, ch, refs);
    copy_state(w);
    chunk_scores<T, Map>(w, ch, refs);
    for (index i = 0; i < ch.rows; ++i) {
      T den = w.alpha[i] * row_dot(f.phi_q.data() + i * m, f.z.data(), m);
      for (index j = 0, seen = ch.seen(i); j < seen; ++j) den += w.scores[i * C + j];
      row_gradient(den, x.dout.row(i0 + i), x.out.row(i0 + i), w.ab - 1, ab + i * w.ab);
    }
    chunk_score_gradients<T, Map>(w, ch, ab, refs);
    gemm<T, false, true>(ch.rows, m, w.ab, ab, w.ab, w.sz.data(), w.ab, w.gf.data(), m, gemm_update::overwrite);
    for (index i = 0; i < ch.rows; ++i)
      for (index l = 0; l < m; ++l) w.gf[i * m + l] *= w.alpha[i];
    visible_product<false>(ch, chunk_finite(w, ch, ab), w.dscores.data(), C, f.phi_k.data(), m, m, w.gf.data(), m);
    map_back(map, x.q, i0, ch.rows, m, f.phi_q.data(), w.gf.data(), x.dq.row(i0), x.dq.row_stride);
    if (ch.nk == 0) continue;
    if constexpr (Map::log_scaled())
      if (top > f.ref.ref) f.raise_ref(top);
    stage_keys<T, Map>(f, ch.nk, 0, ch.nk);
    update_state(f, v.row(ch.a), v.row_stride, ch.nk);
  }

  // Reverse: each chunk's keys from the later chunks' rows (G) and their own chunk's, then its rows join G.
  std::fill_n(w.gh.data(), m * w.ab, T(0));
  T rho = inf;  // G's reference: none yet
  for (index i0 = (rows_total - 1) / C * C; i0 >= 0; i0 -= C) {
    const causal_grad_chunk ch = chunk_at(i0);
    load_chunk(ch);
    const T* refs = w.rows_ref.data() + i0;
    const T* ab = w.rows_ab.data() + i0 * w.ab;
    if (ch.nk > 0) {
      keys_from_rows<T, Map>(w, ch.nk, rho);
      chunk_scores<T, Map>(w, ch, refs);
      chunk_score_gradients<T, Map>(w, ch, ab, refs);
      const bool finite = chunk_finite(w, ch, ab);
      visible_product<true>(ch, finite, w.dscores.data(), C, f.phi_q.data(), m, m, w.gf.data(), m);
      visible_product<true>(ch, finite, w.scores.data(), C, ab, w.ab, w.ab - 1, w.dval.data(), w.ab - 1);
      add_key_gradients(map, w, k, ch.a, ch.nk, dk, dv);
    }
    rho = join_rows<T, Map>(w, ch, refs, ab, rho);
  }
  keys_before(map, w, k, v, 0, before, rho, dk, dv);
}

}  // namespace salt::detail
