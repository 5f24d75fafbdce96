#pragma once
/// \file linear/workspace.hpp
/// Linear attention's per-thread workspace and the steps every form is made of: features of a block of rows,
/// keys staged against the state's reference, the state updated and read by detail::gemm, rows written under
/// the denominator guard. Internal: linear/attention.hpp and linear/causal.hpp drive them.

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "../config.hpp"
#include "../detail/gemm.hpp"
#include "../detail/simd.hpp"
#include "../detail/workspace.hpp"
#include "../tensor.hpp"
#include "feature_map.hpp"
#include "state.hpp"

namespace salt::detail {

/// Query chunk of the causal form: each chunk pays C^2 (m + dv) for its own keys and C m dv to read the
/// state. BM_causal_chunk (salt_linear_bench) measures the choice: at d = dv = 64, m = 256, float, chunks of
/// 32 to 64 cost about the same per token and 128 or 256 cost more; 64 keeps the products' shapes larger,
/// which other instruction sets and double need more.
inline constexpr index linear_default_chunk = 64;

/// One thread's buffers for one call, allocated once, and the state of the head it is working on.
///
/// The state and a chunk's keys share one row-major buffer `state` (m, width), width = dv + chunk: columns
/// [0, dv) hold S = sum phi(k) v^T, columns dv on the chunk's (weighted) key features phi(K_c)^T. So one
/// product phi(Q_c) [S | phi(K_c)^T] gives the numerators and the chunk's scores [num | A] at once, in
/// `reads` (C, width), and the state update S += phi(K_c)^T V_c reads the keys where they lie; every product
/// reads its right-hand side's rows in place. z = sum phi(k) and the denominators are vectors beside them.
template <class T>
struct linear_workspace {
  index chunk, m, dv, width;  // width = dv + chunk: columns of `state` and `reads`
  aligned_buffer<T> phi_q, phi_k, cq, ck, weights, state, z, reads, dens;
  state_reference<T> ref;  // log-offset of S and z

  linear_workspace(index chunk_, index m_, index dv_)
      : chunk(chunk_), m(m_), dv(dv_), width(dv_ + chunk_), phi_q(chunk_ * m_), phi_k(chunk_ * m_), cq(chunk_),
        ck(chunk_), weights(chunk_), state(m_ * width), z(m_), reads(chunk_ * width), dens(chunk_) {}

  T* keys() noexcept { return state.data() + dv; }               // (m, chunk), stride width: phi(K_c)^T, weighted
  T* num(index i) noexcept { return reads.data() + i * width; }  // (dv) of row i
  T* scores(index i) noexcept { return reads.data() + i * width + dv; }  // (chunk) of row i

  void reset_state() noexcept {
    for (index l = 0; l < m; ++l) std::fill_n(state.data() + l * width, dv, T(0));
    std::fill_n(z.data(), m, T(0));
    ref = state_reference<T>{};
  }
  /// S then z into to ((dv + 1) m), and back.
  void save_state(T* to) const noexcept {
    for (index l = 0; l < m; ++l) std::copy_n(state.data() + l * width, dv, to + l * dv);
    std::copy_n(z.data(), m, to + m * dv);
  }
  void load_state(const T* from) noexcept {
    for (index l = 0; l < m; ++l) std::copy_n(from + l * dv, dv, state.data() + l * width);
    std::copy_n(from + m * dv, m, z.data());
  }
  /// Moves the reference to r (> ref), rescaling the state.
  void raise_ref(T r) noexcept { ref.raise(r, state.data(), m, dv, width, z.data()); }
};

/// phi of rows [r0, r0 + n) of a head into buf (n, m), log scales into scale.
template <class T, class Map>
void map_rows(const Map& map, const head_view<const T>& x, index r0, index n, index m, T* buf, T* scale) {
  const feature_input<T> in(x.row(r0), n, x.cols, Eigen::OuterStride<>(x.row_stride));
  map.map(in, feature_output<T>(buf, n, m, Eigen::OuterStride<>(m)), Map::log_scaled() ? scale : nullptr);
}

/// ws.keys() = the n features in ws.phi_k, transposed, weighted against the reference for log-scaled maps:
/// keys outside [pa, pb) weigh 0 (a later pass takes them).
template <class T, class Map>
void stage_keys(linear_workspace<T>& ws, index n, index pa, index pb) {
  const index m = ws.m, width = ws.width;
  T* w = ws.weights.data();
  for (index j = 0; j < n; ++j) {
    if constexpr (Map::log_scaled()) w[j] = j >= pa && j < pb ? ws.ref.weight(ws.ck[j]) : T(0);
    else w[j] = T(1);
  }
  // Blocks of 16 x 16: the reads and the strided writes both stay within a few cache lines. A key of weight 0
  // is written as zeros, not as 0 * phi: the features of a key whose scale overflowed to -inf may be NaN.
  constexpr index B = 16;
  for (index l0 = 0; l0 < m; l0 += B)
    for (index j0 = 0; j0 < n; j0 += B)
      for (index j = j0, je = std::min(n, j0 + B); j < je; ++j)
        for (index l = l0, le = std::min(m, l0 + B); l < le; ++l)
          ws.keys()[l * width + j] = w[j] == T(0) ? T(0) : ws.phi_k[j * m + l] * w[j];
}

/// S += phi(K)^T V and z += phi(K)^T 1 for the n staged keys from j0 on, values rows v from j0 on (row stride ldv).
template <class T>
void update_state(linear_workspace<T>& ws, const T* v, index ldv, index n, index j0 = 0) {
  gemm<T, false, false>(ws.m, ws.dv, n, ws.keys() + j0, ws.width, v + j0 * ldv, ldv, ws.state.data(), ws.width,
                        gemm_update::chain);
  for (index l = 0; l < ws.m; ++l) {
    const T* row = ws.keys() + l * ws.width + j0;
    T sum = ws.z[l];
    for (index j = 0; j < n; ++j) sum += row[j];
    ws.z[l] = sum;
  }
}

/// Raises the reference past the largest key of the n in ws.ck when it passes the margin.
template <class T>
void raise_for(linear_workspace<T>& ws, index n) {
  T top = -std::numeric_limits<T>::infinity();
  for (index j = 0; j < n; ++j) top = ws.ck[j] > top ? ws.ck[j] : top;
  if (ws.ref.passed_by(top)) ws.raise_ref(top);
}

/// Adds keys [j0, j0 + n) of a head to the state, in any order (no output reads the state in between).
template <class T, class Map>
void absorb_keys(const Map& map, linear_workspace<T>& ws, const head_view<const T>& k, const head_view<const T>& v,
                 index j0, index n) {
  map_rows(map, k, j0, n, ws.m, ws.phi_k.data(), ws.ck.data());
  if constexpr (Map::log_scaled()) raise_for(ws, n);
  stage_keys<T, Map>(ws, n, 0, n);
  update_state(ws, v.row(j0), v.row_stride, n);
}

/// Output row = num / den under the guard (zeros where |den| is below the smallest normal).
template <class T>
void write_row(const T* num, T den, index dv, T* out) noexcept {
  if (std::abs(den) < std::numeric_limits<T>::min()) {
    std::fill_n(out, dv, T(0));
    return;
  }
  for (index c = 0; c < dv; ++c) out[c] = num[c] / den;
}

/// [num | A] (n, dv + nk) = phi_q (n, m) [S | keys (m, nk)], and dens = phi_q z, for the n rows in ws.phi_q.
template <class T>
void read_state(linear_workspace<T>& ws, index n, index nk) {
  gemm<T, false, false>(n, ws.dv + nk, ws.m, ws.phi_q.data(), ws.m, ws.state.data(), ws.width, ws.reads.data(),
                        ws.width, gemm_update::overwrite);
  using vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  Eigen::Map<vec>(ws.dens.data(), n).noalias() =
      Eigen::Map<const row_matrix<T>>(ws.phi_q.data(), n, ws.m) * Eigen::Map<const vec>(ws.z.data(), ws.m);
}

}  // namespace salt::detail
