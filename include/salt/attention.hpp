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
#include "detail/checks.hpp"
#include "detail/engine.hpp"
#include "detail/one_head.hpp"
#include "detail/sparse_transformer_passes.hpp"
#include "error.hpp"
#include "kv_cache.hpp"
#include "mask.hpp"
#include "merge.hpp"
#include "precision.hpp"
#include "quantized.hpp"
#include "run_options.hpp"
#include "score.hpp"
#include "tensor.hpp"

namespace salt {

/// Multi-head attention over strided (batch, heads, tokens, features) views, written into `out`.
/// K/V may have fewer heads than Q (grouped-query: query head h reads K/V head h / (Hq / Hkv)).
/// `lse`, when given, receives the natural-log log-sum-exp of every query row.
///
/// Shapes: q (B, Hq, Lq, d), k (B, Hkv, Lk, d), v (B, Hkv, Lk, dv), out (B, Hq, Lq, dv), lse (B, Hq, Lq);
/// Hkv divides Hq. T, the storage type, is float, double, Eigen::bfloat16 or Eigen::half; the kernel computes,
/// and returns the LSE, in accumulator_t<T> (precision.hpp). The views are read (and out written) in place during the call; nothing is kept after
/// it, and out may not overlap an input. Time O(visited pairs * (d + dv)): Lq * Lk * (d + dv) for a dense
/// mask, the mask's visited blocks for a sparse one (plan_work counts them). Memory beyond out: one
/// workspace per thread of O(tile * (d + dv) + Lk / block) values, the partial rows of tiles cut for load
/// balance, and O(L (d + dv)) for a causal Sparse Transformer pattern's two passes; never Lq x Lk. Throws
/// salt::error naming salt::attention for mismatched shapes, an overlapping out, negative threads, or a
/// policy's failed check; nothing is written then.
template <storage_type T, mask_policy Mask = no_mask, score_policy_for<accumulator_t<T>> Score = dot_product>
void attention(const input_view<T>& q, const input_view<T>& k, const input_view<T>& v,
               const tensor_view<T>& out, const lse_view<accumulator_t<T>>& lse, const Mask& mask = {},
               const Score& score = {}, const run_options& opts = {}) {
  constexpr const char* api = "salt::attention";
  detail::check_qkv(q, k, v, out, opts, api, "attention");
  detail::check_policies(detail::dims_of(q, k, v), api, mask, score);
  const detail::engine_problem<T, Mask, Score> problem{q, k, v, out, lse, mask, score, opts.threads};
  if constexpr (detail::runs_as_passes<Mask, Score> && std::is_same_v<T, accumulator_t<T>>) {
    if (detail::run_sparse_transformer_passes(problem)) return;
  }
  detail::run_engine(problem);
}

/// Multi-head attention over a paged KV cache (kv_cache.hpp), read in place through its page table: q (B, Hq,
/// Lq, d) against sequence b's lengths[b] cached keys of k (d features) and values of v (dv), out (B, Hq, Lq,
/// dv), lse (B, Hq, Lq) when given. Sequences may have different lengths (a ragged batch); masks and scores see
/// each one's own Lk = lengths[b] (so causal{} aligns its new queries with its last keys) and are checked against
/// the longest. k and v may live in different page pools and tables but must hold the same lengths. The result
/// is bit for bit that of the same cache stored contiguously. Time and memory as the strided overload (memory
/// for plans: the longest sequence's). Throws salt::error naming salt::attention for mismatched shapes, a page
/// table naming a page outside the cache or shorter than a sequence's length (with the sequence and the page),
/// an out overlapping the pages, or a policy's failed check; nothing is written then.
template <storage_type T, mask_policy Mask = no_mask, score_policy_for<accumulator_t<T>> Score = dot_product>
void attention(const input_view<T>& q, const std::type_identity_t<paged_view<const T>>& k,
               const std::type_identity_t<paged_view<const T>>& v, const tensor_view<T>& out,
               const lse_view<accumulator_t<T>>& lse, const Mask& mask = {}, const Score& score = {},
               const run_options& opts = {}) {
  constexpr const char* api = "salt::attention";
  detail::check_paged_qkv(q, k, v, out, opts, api);
  const problem_dims dims{q.batch, q.heads, k.heads, q.tokens, k.max_tokens(), q.features, v.features};
  detail::check_policies(dims, api, mask, score);
  detail::run_engine(detail::engine_problem<T, Mask, Score, paged_view<const T>>{q, k, v, out, lse, mask, score, opts.threads});
}

/// Attention over a paged KV cache without the log-sum-exp: as the overload above, with no lse.
template <storage_type T, mask_policy Mask = no_mask, score_policy_for<accumulator_t<T>> Score = dot_product>
void attention(const input_view<T>& q, const std::type_identity_t<paged_view<const T>>& k,
               const std::type_identity_t<paged_view<const T>>& v, const tensor_view<T>& out, const Mask& mask = {},
               const Score& score = {}, const run_options& opts = {}) {
  attention(q, k, v, out, lse_view<accumulator_t<T>>{}, mask, score, opts);
}

/// Multi-head attention over an int8 K and V with scales (quantized.hpp): q (B, Hq, Lq, d) and out (B, Hq, Lq, dv)
/// in T (float, bf16 or fp16), k (B, Hkv, Lk, d) and v (B, Hkv, Lk, dv) quantized, each with its own group. Each
/// key block is dequantized in registers (decode tiles) or once into the workspace (prefill tiles); the result is
/// the float kernel's on the dequantized values. Time and memory as the strided overload. Throws salt::error naming salt::attention for mismatched shapes,
/// scales that do not match their values, an out overlapping an input, or a policy's failed check; nothing is
/// written then.
template <storage_type T, mask_policy Mask = no_mask, score_policy_for<accumulator_t<T>> Score = dot_product>
  requires(!std::is_same_v<T, double>)
void attention(const input_view<T>& q, const quantized_view<const std::int8_t>& k,
               const quantized_view<const std::int8_t>& v, const tensor_view<T>& out,
               const lse_view<accumulator_t<T>>& lse, const Mask& mask = {}, const Score& score = {},
               const run_options& opts = {}) {
  constexpr const char* api = "salt::attention";
  detail::check_quantized_qkv(q, k, v, out, opts, api);
  detail::check_policies(problem_dims{q.batch, q.heads, k.heads, q.tokens, k.tokens, q.features, v.features}, api, mask,
                         score);
  detail::run_engine(detail::engine_problem<T, Mask, Score, quantized_view<const std::int8_t>>{q, k, v, out, lse, mask,
                                                                                             score, opts.threads});
}

/// Attention over an int8 K and V without the log-sum-exp: as the overload above, with no lse.
template <storage_type T, mask_policy Mask = no_mask, score_policy_for<accumulator_t<T>> Score = dot_product>
  requires(!std::is_same_v<T, double>)
void attention(const input_view<T>& q, const quantized_view<const std::int8_t>& k,
               const quantized_view<const std::int8_t>& v, const tensor_view<T>& out, const Mask& mask = {},
               const Score& score = {}, const run_options& opts = {}) {
  attention(q, k, v, out, lse_view<accumulator_t<T>>{}, mask, score, opts);
}

/// Strided multi-head attention without the log-sum-exp: as the first overload, with no lse.
template <storage_type T, mask_policy Mask = no_mask, score_policy_for<accumulator_t<T>> Score = dot_product>
void attention(const input_view<T>& q, const input_view<T>& k, const input_view<T>& v,
               const tensor_view<T>& out, const Mask& mask = {}, const Score& score = {},
               const run_options& opts = {}) {
  attention(q, k, v, out, lse_view<accumulator_t<T>>{}, mask, score, opts);
}

/// One head: q (Lq, d), k (Lk, d), v (Lk, dv) -> output (Lq, dv) and log-sum-exp (Lq), both owned by the
/// result. Row-major inputs and row blocks are read in place; a column-major input is copied once. Cost and
/// errors as the multi-head overload.
template <class DQ, class DK, class DV, mask_policy Mask = no_mask,
          score_policy_for<accumulator_t<typename DQ::Scalar>> Score = dot_product>
attention_result<typename DQ::Scalar> attention_with_lse(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                                         const Eigen::MatrixBase<DV>& v, const Mask& mask = {},
                                                         const Score& score = {}, const run_options& opts = {}) {
  using T = typename DQ::Scalar;
  static_assert(std::is_same_v<T, typename DK::Scalar> && std::is_same_v<T, typename DV::Scalar>,
                "salt::attention: q, k and v must have the same scalar type.");
  attention_result<T> r{row_matrix<T>(), column<accumulator_t<T>>(q.rows())};
  r.out = detail::one_head<T>(
      [&](const auto& qv, const auto& kv, const auto& vv, const auto& outv) {
        attention(qv, kv, vv, outv, lse_view<accumulator_t<T>>{r.lse.data(), 0, 0}, mask, score, opts);
      },
      q, k, v);
  return r;
}

/// One head, output only. See attention_with_lse.
template <class DQ, class DK, class DV, mask_policy Mask = no_mask,
          score_policy_for<accumulator_t<typename DQ::Scalar>> Score = dot_product>
row_matrix<typename DQ::Scalar> attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                          const Eigen::MatrixBase<DV>& v, const Mask& mask = {},
                                          const Score& score = {}, const run_options& opts = {}) {
  return attention_with_lse(q, k, v, mask, score, opts).out;
}

}  // namespace salt
