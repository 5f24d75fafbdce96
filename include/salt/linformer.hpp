#pragma once
/// \file linformer.hpp
/// Linformer (Wang et al., "Linformer: Self-Attention with Linear Complexity", 2020): keys and values are
/// projected along the sequence, K' = E K and V' = F V with E, F of shape (k, max_len), and the queries
/// attend exactly to the k projected keys: O(L k d) time, O(k d) extra memory per head.
///
///     using salt::linformer_sharing;
///     auto proj = salt::linformer_projections<float>::gaussian(256, 4096, 1, linformer_sharing::shared_heads, 7);
///     salt::row_matrix<float> out = salt::linformer_attention(q, k, v, proj);          // one head
///     salt::linformer_attention(qv, kv, vv, outv, proj, salt::key_padding{lengths});   // many heads
///
/// A sequence of L <= max_len tokens uses the first L columns of E and F. Key padding (any key-only mask)
/// zeroes the padded keys and values before projecting (so only the first `length` columns of E and F
/// contribute); the k projected keys themselves are all attended. Linformer has no causal form (see
/// linformer_attention).

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "config.hpp"
#include "detail/checks.hpp"
#include "detail/through_float.hpp"
#include "precision.hpp"
#include "detail/engine.hpp"
#include "detail/gemm.hpp"
#include "detail/one_head.hpp"
#include "detail/parallel.hpp"
#include "detail/workspace.hpp"
#include "error.hpp"
#include "linformer/projections.hpp"
#include "mask.hpp"
#include "merge.hpp"
#include "run_options.hpp"
#include "score.hpp"
#include "tensor.hpp"

namespace salt {
namespace detail {

/// The masks Linformer can honour, checked where a call is compiled: key-only ones (capabilities.hpp).
template <class Mask>
constexpr void check_linformer_mask() {
  static_assert(!has_prefix_part<Mask>::value,
                "salt::linformer_attention cannot be causal: projecting keys and values along the sequence "
                "(K' = E K, V' = F V) mixes every position, future tokens included, into each projected key, so no "
                "mask on the projected keys can hide the future.");
  static_assert(has_prefix_part<Mask>::value || key_length_mask<Mask>,
                "salt::linformer_attention takes key-only masks (no_mask, key_padding, or a mask with valid_keys): "
                "other masks pick (query, key) pairs by position, and the projected keys have no positions.");
}

/// The checks of a Linformer call beyond its views' shapes: the policies', the mask's valid keys, a sequence no
/// longer than the projections take, and per-head projections for as many heads as k and v have.
template <class T, class Mask>
void check_linformer(const tensor_view<const T>& q, const tensor_view<const T>& k, const tensor_view<const T>& v,
                     const linformer_projections<T>& proj, const Mask& mask, const dot_product& score, const char* api) {
  check_policies(dims_of(q, k, v), api, mask, score);
  check_valid_keys(mask, k.batch, q.tokens, k.tokens, api);
  require(k.tokens <= proj.max_len(), api, ": the sequence has ", k.tokens, " keys but the projections take at most ",
          proj.max_len(), " (max_len)");
  require(proj.sharing() != linformer_sharing::per_head || proj.heads() == k.heads, api,
          ": the projections hold one (E, F) pair per head for ", proj.heads(), " heads but k and v have ", k.heads);
}

/// Positions summed per partial sum of a projection. The sum over l is blocked, each block's partial sum
/// starting from zero and then added to the output, so rounding error grows with len / 128 + 128 rather than
/// with len (a float projection of 64k positions stays as accurate as a blocked GEMM).
inline constexpr index linformer_sum_block = 128;

/// out (rows, w) = a (rows, len) b (len, w): a Linformer projection, E[:, :len] K, one gemm per block of
/// positions (the first overwrites out, the others add their partial sums: gemm_update::add). Each entry
/// depends on its own row of a and column of b only, so results do not depend on how work is split between
/// threads. len = 0 gives zeros.
template <class T>
void linformer_project(const T* a, index lda, index rows, const T* b, index ldb, index len, index w, T* out,
                       index ldo) noexcept {
  const index first = std::min(linformer_sum_block, len);
  gemm<T, false, false>(rows, w, first, a, lda, b, ldb, out, ldo, gemm_update::overwrite);
  for (index l0 = first; l0 < len; l0 += linformer_sum_block) {
    const index nl = std::min(linformer_sum_block, len - l0);
    gemm<T, false, false>(rows, w, nl, a + l0, lda, b + l0 * ldb, ldb, out, ldo, gemm_update::add);
  }
}

/// Rows of a projection computed per work item: a multiple of the product's tile rows (6 or 3).
inline constexpr index linformer_row_chunk = 96;

/// K' = E_h[:, :n] K[:n] and V' = F_h[:, :n] V[:n] of every (batch item b, K/V head h), n the batch item's valid
/// keys under `mask`, into kbuf (B, Hkv, k, d) and vbuf (B, Hkv, k, dv), contiguous; in parallel over (b, h, keys
/// or values, row chunk).
template <class T, class Mask>
void project_keys_values(const tensor_view<const T>& k, const tensor_view<const T>& v,
                         const linformer_projections<T>& proj, const Mask& mask, index lq, T* kbuf, T* vbuf,
                         int threads) {
  const index H = k.heads, kp = proj.k(), d = k.features, dv = v.features;
  const index chunks = (kp + linformer_row_chunk - 1) / linformer_row_chunk;
  const index items = k.batch * H * 2 * chunks;  // (batch, head, keys or values, row chunk)
  auto project = [&](index it, no_workspace&) {
    const index chunk = it % chunks, rest = it / chunks;
    const bool values = rest % 2 != 0;
    const index bh = rest / 2, b = bh / H, h = bh % H;
    const index len = valid_keys_of(mask, problem_shape{lq, k.tokens, b, 0});
    const index r0 = chunk * linformer_row_chunk, rows = std::min(linformer_row_chunk, kp - r0);
    const auto m = values ? proj.f(h) : proj.e(h);  // (k, max_len)
    const head_view<const T> src = values ? v.head(b, h) : k.head(b, h);
    const index w = values ? dv : d;
    T* dst = (values ? vbuf : kbuf) + (bh * kp + r0) * w;
    linformer_project(m.data() + r0 * proj.max_len(), proj.max_len(), rows, src.data, src.row_stride, len, w, dst, w);
  };
  parallel_for(items, thread_count(threads, items), [] { return no_workspace{}; }, project);
}

}  // namespace detail

/// Multi-head Linformer attention over strided (batch, heads, tokens, features) views, written into `out`
/// (and the log-sum-exp of each query row over the k projected keys into `lse`, when given). For each
/// batch item b and K/V head h: K' = E_h[:, :n] K[:n], V' = F_h[:, :n] V[:n] with n the sequence length
/// (or the batch item's valid keys under a key-only mask such as key_padding), then exact attention of Q
/// against (K', V') on the engine. With grouped-query attention, query heads that share a K/V head share
/// its projections.
///
/// Only key-only masks (salt::key_length_mask: no_mask, key_padding, a user mask with valid_keys) are
/// accepted, and any mask with a causal part is rejected at compile time: causal Linformer is not defined,
/// because each projected key mixes all positions, future ones included.
/// A batch item with no valid key projects to zero keys and values: its rows output zeros (and LSE log k,
/// since the k projected keys are still attended). `score` sets the scale (default 1/sqrt(d)). The projected
/// keys and values of every (batch item, K/V head) are held at once: batch * Hkv * k * (d + dv) elements.
///
/// Shapes: q (B, Hq, Lq, d), k (B, Hkv, L, d), v (B, Hkv, L, dv), out (B, Hq, Lq, dv), lse (B, Hq, Lq), with
/// L <= proj.max_len(). The views and `proj` are read during the call, nothing is kept. Time
/// O(B Hkv k L (d + dv)) to project plus O(B Hq Lq k (d + dv)) to attend. Throws salt::error naming
/// salt::linformer_attention for mismatched shapes, L > max_len, per-head projections for another number
/// of K/V heads, or a mask's failed check.
template <storage_type T, class Mask = no_mask>
void linformer_attention(const input_view<T>& q, const input_view<T>& k, const input_view<T>& v,
                         const tensor_view<T>& out, const lse_view<accumulator_t<T>>& lse,
                         const linformer_projections<accumulator_t<T>>& proj, const Mask& mask = {},
                         const dot_product& score = {}, const run_options& opts = {}) {
  detail::check_linformer_mask<Mask>();
  constexpr const char* api = "salt::linformer_attention";
  if constexpr (is_half_width<T>) {  // bf16, fp16: float copies (detail/through_float.hpp)
    detail::through_float(
        api, "Linformer attention",
        [&](const auto& qf, const auto& kf, const auto& vf, const auto& of) {
          linformer_attention<float, Mask>(qf, kf, vf, of, lse, proj, mask, score, opts);
        },
        out, q, k, v);
  } else {
    detail::check_qkv(q, k, v, out, opts, api, "Linformer attention");
    detail::check_linformer(q, k, v, proj, mask, score, api);

    // Projected keys and values of every (batch item, K/V head): (batch, kv heads, k, d) and (.., k, dv).
    const index B = k.batch, H = k.heads, kp = proj.k(), d = k.features, dv = v.features;
    detail::aligned_buffer<T> kbuf(B * H * kp * d), vbuf(B * H * kp * dv);
    detail::project_keys_values(k, v, proj, mask, q.tokens, kbuf.data(), vbuf.data(), opts.threads);

    // Exact attention on the projected keys; the checks above cover it (q, out and the score are the caller's,
    // the projected keys and values are this call's own buffers).
    const tensor_view<const T> kv{kbuf.data(), B, H, kp, d, H * kp * d, kp * d, d};
    const tensor_view<const T> vv{vbuf.data(), B, H, kp, dv, H * kp * dv, kp * dv, dv};
    const no_mask every_key{};
    detail::run_engine(detail::engine_problem<T, no_mask, dot_product>{q, kv, vv, out, lse, every_key, score, opts.threads});
  }
}

/// Multi-head Linformer attention without the log-sum-exp: as the overload above, with no lse.
template <storage_type T, class Mask = no_mask>
void linformer_attention(const input_view<T>& q, const input_view<T>& k, const input_view<T>& v,
                         const tensor_view<T>& out, const linformer_projections<accumulator_t<T>>& proj,
                         const Mask& mask = {}, const dot_product& score = {}, const run_options& opts = {}) {
  linformer_attention<T, Mask>(q, k, v, out, lse_view<accumulator_t<T>>{}, proj, mask, score, opts);
}

/// One head with the log-sum-exp: q (Lq, d), k (L, d), v (L, dv) -> the (Lq, dv) output and the LSE of each
/// row over the k projected keys, owned (what linformer_backward takes). Row-major inputs are read in place; a
/// column-major one is copied once. `mask` is key-only (no_mask, or key_padding with one length). Cost and
/// errors as the multi-head overload.
template <class DQ, class DK, class DV, class Mask = no_mask>
attention_result<typename DQ::Scalar> linformer_attention_with_lse(
    const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v,
    const linformer_projections<accumulator_t<typename DQ::Scalar>>& proj, const Mask& mask = {},
    const dot_product& score = {}, const run_options& opts = {}) {
  using T = typename DQ::Scalar;
  static_assert(std::is_same_v<T, typename DK::Scalar> && std::is_same_v<T, typename DV::Scalar>,
                "salt::linformer_attention: q, k and v must have the same scalar type.");
  detail::check_linformer_mask<Mask>();
  attention_result<T> r{row_matrix<T>(), column<accumulator_t<T>>(q.rows())};
  r.out = detail::one_head<T>(
      [&](const auto& qv, const auto& kv, const auto& vv, const auto& outv) {
        linformer_attention<T, Mask>(qv, kv, vv, outv, lse_view<accumulator_t<T>>{r.lse.data(), 0, 0}, proj, mask,
                                     score, opts);
      },
      q, k, v);
  return r;
}

/// One head: q (Lq, d), k (L, d), v (L, dv) -> a new (Lq, dv) matrix. As linformer_attention_with_lse, output
/// only.
template <class DQ, class DK, class DV, class Mask = no_mask>
row_matrix<typename DQ::Scalar> linformer_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                                    const Eigen::MatrixBase<DV>& v,
                                                    const linformer_projections<accumulator_t<typename DQ::Scalar>>& proj,
                                                    const Mask& mask = {}, const dot_product& score = {},
                                                    const run_options& opts = {}) {
  return linformer_attention_with_lse(q, k, v, proj, mask, score, opts).out;
}

}  // namespace salt
