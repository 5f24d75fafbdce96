#pragma once
/// \file attention.hpp
/// Exact softmax attention: out = softmax(score(Q, K) masked) V, tiled, O((Lq + Lk) d) memory.
///
///     salt::row_matrix<float> out = salt::attention(q, k, v);                  // one head, dense
///     auto causal_out = salt::attention(q, k, v, salt::causal{});              // decoder
///     salt::attention(qv, kv, vv, outv, salt::causal{} & salt::key_padding{lengths});  // many heads

#include <Eigen/Core>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "config.hpp"
#include "detail/engine.hpp"
#include "error.hpp"
#include "mask.hpp"
#include "score.hpp"
#include "tensor.hpp"

namespace salt {

/// How a call runs (not what it computes: results are identical for every setting).
struct run_options {
  int threads = 0;  ///< 0: OpenMP's default (OMP_NUM_THREADS); ignored without OpenMP
};

/// Output and natural-log log-sum-exp of each query row (-inf for a row that sees no key).
template <class T>
struct attention_result {
  row_matrix<T> out;  // (Lq, dv)
  column<T> lse;      // (Lq)
};

namespace detail {

template <class T>
std::pair<const char*, const char*> byte_range(const tensor_view<T>& t) {
  const auto* p = reinterpret_cast<const char*>(t.data);
  if (t.batch == 0 || t.heads == 0 || t.tokens == 0 || t.features == 0) return {p, p};
  const index last = (t.batch - 1) * t.batch_stride + (t.heads - 1) * t.head_stride + (t.tokens - 1) * t.token_stride +
                     t.features;
  return {p, p + last * static_cast<index>(sizeof(T))};
}

template <class T, class U>
bool overlaps(const tensor_view<T>& a, const tensor_view<U>& b) {
  const auto [a0, a1] = byte_range(a);
  const auto [b0, b1] = byte_range(b);
  return a0 < b1 && b0 < a1;
}

template <class T>
void check_view(const tensor_view<T>& t, const char* api, const char* name) {
  require(t.batch >= 0 && t.heads >= 0 && t.tokens >= 0 && t.features >= 0, api, ": ", name,
          " has a negative size (", t.batch, ", ", t.heads, ", ", t.tokens, ", ", t.features, ")");
  require(t.batch_stride >= 0 && t.head_stride >= 0 && t.token_stride >= 0, api, ": ", name,
          " has a negative stride");
  require(t.data != nullptr || t.batch * t.heads * t.tokens * t.features == 0, api, ": ", name,
          " is null but has ", t.batch * t.heads * t.tokens * t.features, " elements");
}

/// Every check of a multi-head call, in the order a user would fix them.
template <class T, class Mask, class Score>
void check_problem(const tensor_view<const T>& q, const tensor_view<const T>& k, const tensor_view<const T>& v,
                   const tensor_view<T>& out, const lse_view<T>& lse, const Mask& mask, const Score& score,
                   const run_options& opts, const char* api) {
  check_view(q, api, "q");
  check_view(k, api, "k");
  check_view(v, api, "v");
  check_view(out, api, "out");
  require(q.features == k.features, api, ": q has ", q.features, " features but k has ", k.features);
  require(k.tokens == v.tokens, api, ": k has ", k.tokens, " tokens but v has ", v.tokens);
  require(q.batch == k.batch && k.batch == v.batch, api, ": batch sizes differ: q ", q.batch, ", k ", k.batch, ", v ",
          v.batch);
  require(k.heads == v.heads, api, ": k has ", k.heads, " heads but v has ", v.heads);
  require(k.heads <= q.heads, api, ": k and v have ", k.heads, " heads, more than q's ", q.heads);
  require(q.heads == 0 || (k.heads > 0 && q.heads % k.heads == 0), api, ": q has ", q.heads,
          " heads, not a multiple of k and v's ", k.heads);
  require(out.batch == q.batch && out.heads == q.heads && out.tokens == q.tokens && out.features == v.features, api,
          ": out is (", out.batch, ", ", out.heads, ", ", out.tokens, ", ", out.features, ") but must be (", q.batch,
          ", ", q.heads, ", ", q.tokens, ", ", v.features, ")");
  require(!overlaps(out, q) && !overlaps(out, k) && !overlaps(out, v), api,
          ": out overlaps an input; attention cannot run in place");
  require(opts.threads >= 0, api, ": threads must be >= 0, got ", opts.threads);
  (void)lse;
  const problem_dims dims{q.batch, q.heads, k.heads, q.tokens, k.tokens, q.features, v.features};
  if constexpr (requires { mask.check(dims, api); }) mask.check(dims, api);
  if constexpr (requires { score.check(dims, api); }) score.check(dims, api);
}

}  // namespace detail

/// Read-only input view; the scalar type of a multi-head call is taken from `out`, so mutable and const
/// views both bind here.
template <class T>
using input_view = std::type_identity_t<tensor_view<const T>>;

/// Multi-head attention over strided (batch, heads, tokens, features) views, written into `out`.
/// K/V may have fewer heads than Q (grouped-query: query head h reads K/V head h / (Hq / Hkv)).
/// `lse`, when given, receives the natural-log log-sum-exp of every query row.
template <class T, mask_policy Mask = no_mask, score_policy_for<T> Score = dot_product>
void attention(const input_view<T>& q, const input_view<T>& k, const input_view<T>& v,
               const tensor_view<T>& out, const lse_view<T>& lse, const Mask& mask = {}, const Score& score = {},
               const run_options& opts = {}) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "salt::attention computes in float or double.");
  detail::check_problem(q, k, v, out, lse, mask, score, opts, "salt::attention");
  detail::run_engine(detail::engine_problem<T, Mask, Score>{q, k, v, out, lse, mask, score, opts.threads});
}

/// Multi-head attention without the log-sum-exp.
template <class T, mask_policy Mask = no_mask, score_policy_for<T> Score = dot_product>
void attention(const input_view<T>& q, const input_view<T>& k, const input_view<T>& v,
               const tensor_view<T>& out, const Mask& mask = {}, const Score& score = {},
               const run_options& opts = {}) {
  attention(q, k, v, out, lse_view<T>{}, mask, score, opts);
}

/// One head: q (Lq, d), k (Lk, d), v (Lk, dv) -> output (Lq, dv) and log-sum-exp (Lq).
/// Row-major inputs and row blocks are read in place; a column-major input is copied once.
template <class DQ, class DK, class DV, mask_policy Mask = no_mask,
          score_policy_for<typename DQ::Scalar> Score = dot_product>
attention_result<typename DQ::Scalar> attention_with_lse(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                                         const Eigen::MatrixBase<DV>& v, const Mask& mask = {},
                                                         const Score& score = {}, const run_options& opts = {}) {
  using T = typename DQ::Scalar;
  static_assert(std::is_same_v<T, typename DK::Scalar> && std::is_same_v<T, typename DV::Scalar>,
                "salt::attention: q, k and v must have the same scalar type.");
  const matrix_cref<T> qr(q), kr(k), vr(v);
  attention_result<T> r{row_matrix<T>(qr.rows(), vr.cols()), column<T>(qr.rows())};
  auto view = [](const matrix_cref<T>& m) {
    return tensor_view<const T>{m.data(), 1, 1, m.rows(), m.cols(), 0, 0, m.outerStride()};
  };
  attention(view(qr), view(kr), view(vr), tensor_view<T>::of(r.out), lse_view<T>{r.lse.data(), 0, 0}, mask, score,
            opts);
  return r;
}

/// One head, output only. See attention_with_lse.
template <class DQ, class DK, class DV, mask_policy Mask = no_mask,
          score_policy_for<typename DQ::Scalar> Score = dot_product>
row_matrix<typename DQ::Scalar> attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                          const Eigen::MatrixBase<DV>& v, const Mask& mask = {},
                                          const Score& score = {}, const run_options& opts = {}) {
  return attention_with_lse(q, k, v, mask, score, opts).out;
}

}  // namespace salt
