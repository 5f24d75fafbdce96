#pragma once
/// \file linear/attention.hpp
/// Kernelized linear attention (Katharopoulos et al. 2020; Performer, Choromanski et al. 2021): softmax(Q
/// K^T) is replaced by phi(Q) phi(K)^T for a feature map phi, so a head costs O(L m (d + dv)), not O(L^2 d).
///
///     salt::favor_plus<float> phi(salt::random_features<float>::orthogonal(256, 64, /*seed=*/7));
///     auto out = salt::linear_attention(q, k, v, phi);                       // one head, non-causal
///     auto dec = salt::linear_attention(q, k, v, phi, salt::causal{});       // causal (chunked)
///     salt::linear_attention(qv, kv, vv, outv, salt::elu_plus_one{}, salt::causal{} & salt::key_padding{lens});
///
/// Forms. Non-causal: out = phi(Q) (phi(K)^T V) / (phi(Q) . sum_j phi(k_j)). Causal: the same with the sums
/// over the keys each query may see, computed in chunks of C queries: the state S = sum phi(k) v^T, z = sum
/// phi(k) of all earlier chunks is read with one GEMM, the chunk's own keys through the masked C x C matrix
/// phi(Q_c) phi(K_c)^T (quadratic only inside the chunk), and the state is then advanced with phi(K_c)^T V_c.
/// Every step is a GEMM; there are no per-token rank-1 updates. The causal mask is `salt::causal` with its
/// alignment and offset, as for exact attention; key padding is applied after phi (elu(0) + 1 is not 0).
///
/// Stabilisation. Maps with a log scale (FAVOR+, trig) give phi(x) = exp(s(x)) f(x). A query's scale cancels
/// between numerator and denominator and is dropped. A key is weighted exp(s(k) - r) against a running
/// reference r, the log-offset of the state: r is raised, and S, z rescaled by exp(r_old - r_new), only when
/// a key's s exceeds r by more than a margin (2^40 in float, 2^320 in double), so weights stay below that
/// margin and nothing overflows. In the causal form a new reference starts a new pass over the chunk (same
/// GEMM shapes, the other keys zeroed), so a query's output depends only on the keys it may see: changing a
/// later token (by finite values) leaves earlier outputs unchanged, bit for bit. The non-causal form raises
/// the reference per block of keys.
///
/// Denominator guard: a row whose denominator is below the smallest normal number in magnitude (zero when
/// the row may see no key, or all its features underflow) outputs zeros; otherwise out = numerator /
/// denominator. With positive maps (FAVOR+, ReLU with epsilon, elu + 1) the output is then a convex
/// combination of the visible values. NaN passes through.
///
/// GQA: query head h reads K/V head h / (Hq / Hkv). Non-causal calls build each K/V head's state once and
/// share it across its query heads; causal calls run each query head independently. Threads run over
/// (batch, head) items; results are identical for every thread count.

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "../attention.hpp"
#include "../config.hpp"
#include "../detail/gemm.hpp"
#include "../detail/simd.hpp"
#include "../detail/workspace.hpp"
#include "../error.hpp"
#include "../mask.hpp"
#include "../tensor.hpp"
#include "feature_map.hpp"

#if SALT_HAS_OPENMP
#include <omp.h>
#endif

namespace salt {
namespace detail {

/// What linear attention takes from a mask: causal or not (its alignment and offset), key padding or not.
template <class Mask>
struct linear_mask_traits {
  static constexpr bool supported = false;
};
template <>
struct linear_mask_traits<no_mask> {
  static constexpr bool supported = true, is_causal = false;
  static const key_padding* padding(const no_mask&) noexcept { return nullptr; }
  static index shift(const no_mask&, const problem_shape&) noexcept { return 0; }
};
template <>
struct linear_mask_traits<key_padding> {
  static constexpr bool supported = true, is_causal = false;
  static const key_padding* padding(const key_padding& m) noexcept { return &m; }
  static index shift(const key_padding&, const problem_shape&) noexcept { return 0; }
};
template <causal_alignment A>
struct linear_mask_traits<causal<A>> {
  static constexpr bool supported = true, is_causal = true;
  static const key_padding* padding(const causal<A>&) noexcept { return nullptr; }
  static index shift(const causal<A>& m, const problem_shape& s) noexcept { return m.last_key(0, s); }
};
template <causal_alignment A>
struct linear_mask_traits<combined_mask<causal<A>, key_padding, both>> {
  static constexpr bool supported = true, is_causal = true;
  static const key_padding* padding(const combined_mask<causal<A>, key_padding, both>& m) noexcept { return &m.b; }
  static index shift(const combined_mask<causal<A>, key_padding, both>& m, const problem_shape& s) noexcept {
    return m.a.last_key(0, s);
  }
};
template <causal_alignment A>
struct linear_mask_traits<combined_mask<key_padding, causal<A>, both>> {
  static constexpr bool supported = true, is_causal = true;
  static const key_padding* padding(const combined_mask<key_padding, causal<A>, both>& m) noexcept { return &m.a; }
  static index shift(const combined_mask<key_padding, causal<A>, both>& m, const problem_shape& s) noexcept {
    return m.b.last_key(0, s);
  }
};

template <class Mask>
constexpr void check_linear_mask() {
  static_assert(linear_mask_traits<Mask>::supported,
                "salt::linear_attention takes no_mask, key_padding, causal, or causal & key_padding: kernelized "
                "attention sums over keys through a state, which can follow a prefix (causal) or drop keys "
                "(padding) but not an arbitrary set of (query, key) pairs.");
}

/// Weights stay below exp(margin) before the state's reference is raised: 2^40 in float, 2^320 in double,
/// leaving room for the sums of up to 2^40 (float) keys times values before anything overflows.
template <class T>
inline constexpr T linear_rescale_margin = std::is_same_v<T, float> ? T(27.725887222397812) : T(221.80709777918249);

/// Query chunk of the causal form: each chunk pays C^2 (m + dv) for its own keys and C m dv to read the
/// state. At d = dv = 64, m = 256, float, AVX-512, one thread (BM_causal_chunk): 32, 48 and 64 within 10%
/// of each other (1.11, 1.12 and 1.20 us per token on Zen 5), 128 1.15x and 256 1.6x slower than 64; 64
/// keeps the products' shapes larger, which other instruction sets and double need more.
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
  T ref = -std::numeric_limits<T>::infinity();  // log-offset of S and z

  linear_workspace(index chunk_, index m_, index dv_)
      : chunk(chunk_), m(m_), dv(dv_), width(dv_ + chunk_), phi_q(chunk_ * m_), phi_k(chunk_ * m_), cq(chunk_),
        ck(chunk_), weights(chunk_), state(m_ * width), z(m_), reads(chunk_ * width), dens(chunk_) {}

  T* keys() noexcept { return state.data() + dv; }               // (m, chunk), stride width: phi(K_c)^T, weighted
  T* num(index i) noexcept { return reads.data() + i * width; }  // (dv) of row i
  T* scores(index i) noexcept { return reads.data() + i * width + dv; }  // (chunk) of row i

  void reset_state() noexcept {
    for (index l = 0; l < m; ++l) std::fill_n(state.data() + l * width, dv, T(0));
    std::fill_n(z.data(), m, T(0));
    ref = -std::numeric_limits<T>::infinity();
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
  /// Moves the reference to r (> ref), rescaling the state. A state with no reference is all zeros.
  void raise_ref(T r) noexcept {
    if (ref != -std::numeric_limits<T>::infinity()) {
      const T f = std::exp(ref - r);
      for (index l = 0; l < m; ++l) {
        T* row = state.data() + l * width;
        for (index c = 0; c < dv; ++c) row[c] *= f;
        z[l] *= f;
      }
    }
    ref = r;
  }
  /// A key's weight against the current reference; a key of scale -inf weighs nothing.
  T weight(T c) const noexcept { return c == -std::numeric_limits<T>::infinity() ? T(0) : std::exp(c - ref); }
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
    if constexpr (Map::log_scaled()) w[j] = j >= pa && j < pb ? ws.weight(ws.ck[j]) : T(0);
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
  gemm<T, false, false>(ws.m, ws.dv, n, ws.keys() + j0, ws.width, v + j0 * ldv, ldv, ws.state.data(), ws.width, true);
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
  if (top > ws.ref + linear_rescale_margin<T>) ws.raise_ref(top);
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
                        ws.width, false);
  using vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  Eigen::Map<vec>(ws.dens.data(), n).noalias() =
      Eigen::Map<const row_matrix<T>>(ws.phi_q.data(), n, ws.m) * Eigen::Map<const vec>(ws.z.data(), ws.m);
}

/// Non-causal queries of one head against the finished state in ws.
template <class T, class Map>
void noncausal_queries(const Map& map, linear_workspace<T>& ws, const head_view<const T>& q, const head_view<T>& out) {
  for (index i0 = 0; i0 < q.rows; i0 += ws.chunk) {
    const index n = std::min(ws.chunk, q.rows - i0);
    map_rows(map, q, i0, n, ws.m, ws.phi_q.data(), ws.cq.data());
    read_state(ws, n, 0);
    for (index i = 0; i < n; ++i) write_row(ws.num(i), ws.dens[i], ws.dv, out.row(i0 + i));
  }
}

/// One query head, causal: query i sees keys j <= i + shift, j < len.
template <class T, class Map>
void causal_head(const Map& map, linear_workspace<T>& ws, const head_view<const T>& q, const head_view<const T>& k,
                 const head_view<const T>& v, const head_view<T>& out, index shift, index len) {
  const index m = ws.m, dv = ws.dv, C = ws.chunk;
  ws.reset_state();
  const index prefix = std::clamp<index>(shift, 0, len);  // keys every query sees before the diagonal
  for (index j0 = 0; j0 < prefix; j0 += C) absorb_keys(map, ws, k, v, j0, std::min(C, prefix - j0));

  for (index i0 = 0; i0 < q.rows; i0 += C) {
    const index rows = std::min(C, q.rows - i0);
    // This chunk's own keys are [a, b); query i0 + i sees them up to local key i + diag.
    const index a = std::clamp<index>(i0 + shift, 0, len), b = std::clamp<index>(i0 + rows + shift, 0, len);
    const index nk = b - a, diag = i0 + shift - a;
    map_rows(map, q, i0, rows, m, ws.phi_q.data(), ws.cq.data());
    if (nk > 0) map_rows(map, k, a, nk, m, ws.phi_k.data(), ws.ck.data());
    const T* vc = nk > 0 ? v.row(a) : nullptr;  // the chunk's values, rows of stride v.row_stride, read in place
    const bool values_finite = nk == 0 || all_finite(vc, nk, dv, v.row_stride);
    // Passes over the chunk's keys: one, unless a key's scale jumps past the reference margin; a pass
    // starts at that key, with the reference raised to its scale. Pass shapes never change, so a row's
    // arithmetic depends only on the keys it sees.
    index pa = 0;
    do {
      index pb = nk;
      if constexpr (Map::log_scaled()) {
        if (nk > 0) {
          if (ws.ck[pa] > ws.ref + linear_rescale_margin<T>) ws.raise_ref(ws.ck[pa]);
          pb = pa + 1;
          while (pb < nk && !(ws.ck[pb] > ws.ref + linear_rescale_margin<T>)) ++pb;
        }
      }
      stage_keys<T, Map>(ws, nk, pa, pb);
      // Rows this pass answers: last visible key in [pa, pb); the first pass also takes rows that see no
      // key of the chunk, the last one rows past the chunk's keys.
      const index r0 = pa == 0 ? 0 : std::clamp<index>(pa - diag, 0, rows);
      const index r1 = pb == nk ? rows : std::clamp<index>(pb - diag, 0, rows);
      if (r0 < r1) {
        read_state(ws, rows, nk);
        if (nk > 0) {
          for (index i = 0; i < rows; ++i) {  // causal mask inside the chunk; the visible scores join den
            T* ai = ws.scores(i);
            const index seen = std::clamp<index>(i + diag + 1, 0, nk);
            std::fill(ai + seen, ai + nk, T(0));
            T den = ws.dens[i];
            for (index j = 0; j < seen; ++j) den += ai[j];
            ws.dens[i] = den;
          }
          if (values_finite) {  // num += A V
            gemm<T, false, false>(rows, dv, nk, ws.scores(0), ws.width, vc, v.row_stride, ws.num(0), ws.width, true);
          } else {  // 0 * inf would leak a later value into earlier rows: sum only the visible keys
            for (index i = 0; i < rows; ++i)
              for (index j = 0, seen = std::clamp<index>(i + diag + 1, 0, nk); j < seen; ++j)
                for (index c = 0; c < dv; ++c) ws.num(i)[c] += ws.scores(i)[j] * vc[j * v.row_stride + c];
          }
        }
        for (index i = r0; i < r1; ++i) {
          if (i + diag < 0) std::fill_n(out.row(i0 + i), dv, T(0));  // sees no key at all
          else write_row(ws.num(i), ws.dens[i], dv, out.row(i0 + i));
        }
      }
      // Keys outside this pass weigh 0, but 0 * inf would still carry a non-finite value of a later pass's key
      // into the state that this chunk's next passes read for rows that do not see that key: such chunks add
      // only this pass's keys.
      if (nk > 0) {
        if (values_finite) update_state(ws, vc, v.row_stride, nk);
        else update_state(ws, vc, v.row_stride, pb - pa, pa);
      }
      pa = pb;
    } while (pa < nk);
  }
}

/// Runs f(workspace, item) for items 0..n-1 over OpenMP threads, each thread with its own workspace.
template <class T, class F>
void linear_for(index n, const run_options& opts, index chunk, index m, index dv, F&& f) {
#if SALT_HAS_OPENMP
  const int threads =
      static_cast<int>(std::clamp<index>(opts.threads > 0 ? opts.threads : omp_get_max_threads(), 1, std::max<index>(n, 1)));
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    linear_workspace<T> ws(chunk, m, dv);
#pragma omp for schedule(dynamic, 1)
    for (index it = 0; it < n; ++it) f(ws, it);
  }
#else
  (void)opts;
  linear_workspace<T> ws(chunk, m, dv);
  for (index it = 0; it < n; ++it) f(ws, it);
#endif
}

template <class T, class Mask, class Map>
void linear_attention_impl(const tensor_view<const T>& q, const tensor_view<const T>& k,
                           const tensor_view<const T>& v, const tensor_view<T>& out, const Map& map, const Mask& mask,
                           const run_options& opts, index chunk) {
  using traits = linear_mask_traits<Mask>;
  const index B = q.batch, Hq = q.heads, Hkv = k.heads, dv = v.features;
  if (B == 0 || Hq == 0 || q.tokens == 0 || dv == 0) return;
  const index m = map.features(q.features), group = Hq / Hkv;
  const key_padding* padding = traits::padding(mask);
  auto length = [&](index b) { return padding ? padding->lengths[static_cast<std::size_t>(b)] : k.tokens; };
  const problem_shape shape{q.tokens, k.tokens, 0, 0};


  if constexpr (traits::is_causal) {
    const index shift = traits::shift(mask, shape);
    linear_for<T>(B * Hq, opts, chunk, m, dv, [&](linear_workspace<T>& ws, index it) {
      const index b = it / Hq, h = it % Hq;
      causal_head(map, ws, q.head(b, h), k.head(b, h / group), v.head(b, h / group), out.head(b, h), shift,
                  length(b));
    });
  } else {
    // The state of every (batch item, K/V head): S (m, dv) then z (m).
    const index per = (dv + 1) * m;
    aligned_buffer<T> states(B * Hkv * per);
    linear_for<T>(B * Hkv, opts, chunk, m, dv, [&](linear_workspace<T>& ws, index it) {
      const index b = it / Hkv, h = it % Hkv;
      ws.reset_state();
      for (index j0 = 0, len = length(b); j0 < len; j0 += chunk)
        absorb_keys(map, ws, k.head(b, h), v.head(b, h), j0, std::min(chunk, len - j0));
      ws.save_state(states.data() + it * per);
    });
    linear_for<T>(B * Hq, opts, chunk, m, dv, [&](linear_workspace<T>& ws, index it) {
      const index b = it / Hq, h = it % Hq;
      ws.load_state(states.data() + (b * Hkv + h / group) * per);
      noncausal_queries(map, ws, q.head(b, h), out.head(b, h));
    });
  }
}

}  // namespace detail

/// Multi-head linear attention over strided (batch, heads, tokens, features) views, written into `out`.
/// `mask` is no_mask, key_padding, causal (any alignment and offset), or causal & key_padding; causal
/// selects the chunked form. The map's features are computed in the inputs' type T.
template <class T, class Map, class Mask = no_mask>
  requires feature_map<Map, T>
void linear_attention(const input_view<T>& q, const input_view<T>& k, const input_view<T>& v,
                      const tensor_view<T>& out, const Map& map, const Mask& mask = {}, const run_options& opts = {}) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "salt::linear_attention computes in float or double.");
  detail::check_linear_mask<Mask>();
  constexpr const char* api = "salt::linear_attention";
  detail::check_qkv(q, k, v, out, opts, api, "linear attention");
  detail::check_policies(detail::dims_of(q, k, v), api, mask);
  detail::check_feature_map(map, q.features, api);
  detail::linear_attention_impl<T>(q, k, v, out, map, mask, opts, detail::linear_default_chunk);
}

/// One head: q (Lq, d), k (Lk, d), v (Lk, dv) -> (Lq, dv). Row-major inputs are read in place; a
/// column-major one is copied once. `mask` as for the multi-head form (key_padding with one length).
template <class DQ, class DK, class DV, class Map, class Mask = no_mask>
  requires feature_map<Map, typename DQ::Scalar>
row_matrix<typename DQ::Scalar> linear_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                                 const Eigen::MatrixBase<DV>& v, const Map& map, const Mask& mask = {},
                                                 const run_options& opts = {}) {
  using T = typename DQ::Scalar;
  static_assert(std::is_same_v<T, typename DK::Scalar> && std::is_same_v<T, typename DV::Scalar>,
                "salt::linear_attention: q, k and v must have the same scalar type.");
  detail::check_linear_mask<Mask>();
  const matrix_cref<T> qr(q), kr(k), vr(v);
  row_matrix<T> out(qr.rows(), vr.cols());
  auto view = [](const matrix_cref<T>& x) {
    return tensor_view<const T>{x.data(), 1, 1, x.rows(), x.cols(), 0, 0, x.outerStride()};
  };
  linear_attention<T>(view(qr), view(kr), view(vr), tensor_view<T>::of(out), map, mask, opts);
  return out;
}

}  // namespace salt
