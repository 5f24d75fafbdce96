#pragma once
/// \file attention_backward.hpp
/// Gradients of exact attention (FlashAttention-2's backward): given the forward's inputs, its output and LSE,
/// and the gradient of a loss by the output, the gradients by Q, K and V. Every mask and composition, every
/// differentiable score (additive ones, soft-capping and sums of them: differentiable_score_for), grouped-query
/// heads (dK and dV summed over the query heads of a group), Lq != Lk; float and double.
///
///     auto fwd = salt::attention_with_lse(q, k, v, salt::causal{});
///     auto g = salt::attention_backward(q, k, v, fwd, dout, salt::causal{});  // g.dq, g.dk, g.dv
///
/// Deterministic: no atomics, each gradient row has one owner or a fixed-order sum, so gradients are bit for
/// bit the same for any number of threads (detail/engine_backward.hpp).
///
/// The gradient by per-pair score tables (bias_table, synthesizer_random) comes from the same pass: pass
/// `table.gradient_into(buffer)` after the options, and dS is added into the buffer (score/logit_gradient.hpp).

#include <Eigen/Core>

#include <type_traits>
#include <utility>

#include "config.hpp"
#include "detail/checks.hpp"
#include "detail/engine_backward.hpp"
#include "detail/one_head.hpp"
#include "gradients.hpp"
#include "error.hpp"
#include "mask.hpp"
#include "merge.hpp"
#include "run_options.hpp"
#include "score.hpp"
#include "tensor.hpp"

namespace salt {

/// Gradients of multi-head attention over strided views: dq, dk and dv of a loss whose gradient by the
/// forward's output is dout. out and lse are what salt::attention wrote for the same q, k, v, mask and score
/// (the probabilities are recomputed from the LSE; D = rowsum(dout o out)).
///
/// Shapes: q (B, Hq, Lq, d), k (B, Hkv, Lk, d), v (B, Hkv, Lk, dv), out and dout (B, Hq, Lq, dv), lse (B, Hq, Lq),
/// dq as q, dk as k, dv as v; Hkv divides Hq (dk and dv sum over the query heads of each group). A score without
/// the dot product (a Synthesizer table alone) gives dq = dk = 0. A row that sees no key has zero gradients;
/// NaN or +-Inf in an input reaches only the gradients that depend on it. Time O(visited pairs * (d + dv)),
/// about 2.5 times the forward's multiply-adds; memory beyond the gradients: a workspace per thread of
/// O(tile * (d + dv) + part * (d + dv)), and when B * Hkv < 16, up to 16 / (B * Hkv) partial copies of dq
/// (never Lq x Lk). Throws salt::error naming salt::attention_backward for mismatched shapes, a missing LSE, a
/// gradient overlapping an input or another gradient, negative threads, or a policy's failed check; nothing
/// is written then.
template <class T, mask_policy Mask = no_mask, differentiable_score_for<T> Score = dot_product>
  requires(std::is_same_v<T, float> || std::is_same_v<T, double>)
void attention_backward(const input_view<T>& q, const input_view<T>& k, const input_view<T>& v,
                        const input_view<T>& out, const std::type_identity_t<lse_view<const T>>& lse,
                        const input_view<T>& dout, const tensor_view<T>& dq, const tensor_view<T>& dk,
                        const tensor_view<T>& dv, const Mask& mask = {}, const Score& score = {},
                        const run_options& opts = {}) {
  constexpr const char* api = "salt::attention_backward";
  detail::check_backward(q, k, v, out, lse, dout, dq, dk, dv, opts, api);
  detail::check_policies(detail::dims_of(q, k, v), api, mask, score);
  detail::run_engine_backward(detail::backward_problem<T, Mask, Score>{q, k, v, out, dout, lse, dq, dk, dv, mask, score,
                                                                      opts.threads});
}

/// The same, and the gradient by the logits, dS = P o (dP - D), added into `dlogits` (a per-pair table's
/// gradient: bias_table::gradient_into, synthesizer_random::gradient_into). Entries the mask hides, or of rows
/// that see no key, get nothing added; a table shared by batch items or heads gets the sum of theirs, in a fixed
/// order, so it too is bit-identical for any thread count. Only a score whose additive terms dS differentiates
/// compiles: additive, or softcap over an additive sum (a static_assert says so otherwise). When the table is shared
/// across batch items or K/V groups, at most 16 key partitions run (each walks every batch item and head).
/// Throws salt::error as the overload without it, and when dlogits does not cover the call (rows row_offset ...
/// row_offset + Lq - 1, Lk columns), its tables overlap one another, or it overlaps an input or a gradient.
template <class T, mask_policy Mask, differentiable_score_for<T> Score>
  requires(std::is_same_v<T, float> || std::is_same_v<T, double>)
void attention_backward(const input_view<T>& q, const input_view<T>& k, const input_view<T>& v,
                        const input_view<T>& out, const std::type_identity_t<lse_view<const T>>& lse,
                        const input_view<T>& dout, const tensor_view<T>& dq, const tensor_view<T>& dk,
                        const tensor_view<T>& dv, const Mask& mask, const Score& score, const run_options& opts,
                        const std::type_identity_t<logit_gradient<T>>& dlogits) {
  static_assert(detail::logit_gradient_reaches<Score>,
                "salt::attention_backward: the logit gradient is dS, the gradient by the logits as the score adds "
                "them; a transform applied before a table is added (softcap{} + table) is not differentiated for it: "
                "cap the whole sum (softcap over dot_product{} + table), or use an additive score.");
  constexpr const char* api = "salt::attention_backward";
  detail::check_backward(q, k, v, out, lse, dout, dq, dk, dv, opts, api);
  const problem_dims dims = detail::dims_of(q, k, v);
  detail::check_policies(dims, api, mask, score);
  detail::check_logit_gradient(dlogits, dims, api);
  const tensor_view<const T> region = dlogits.region(dims);
  for (const tensor_view<const T>* x : {&q, &k, &v, &out, &dout})
    detail::require(!detail::overlaps(region, *x), api, ": the logit gradient overlaps an input");
  for (const tensor_view<T>* g : {&dq, &dk, &dv})
    detail::require(!detail::overlaps(region, *g), api, ": the logit gradient overlaps dq, dk or dv");
  detail::run_engine_backward(detail::backward_problem<T, Mask, Score>{q, k, v, out, dout, lse, dq, dk, dv, mask, score,
                                                                      opts.threads, dlogits});
}


/// Gradients of one head's attention: q (Lq, d), k (Lk, d), v (Lk, dv), the forward's result (attention_with_lse
/// with the same mask and score) and dout (Lq, dv). Row-major inputs are read in place; others are copied once.
/// Cost and errors as the multi-head overload.
template <class DQ, class DK, class DV, class DO, mask_policy Mask = no_mask,
          differentiable_score_for<typename DQ::Scalar> Score = dot_product>
attention_gradients<typename DQ::Scalar> attention_backward(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                                            const Eigen::MatrixBase<DV>& v,
                                                            const attention_result<typename DQ::Scalar>& forward,
                                                            const Eigen::MatrixBase<DO>& dout, const Mask& mask = {},
                                                            const Score& score = {}, const run_options& opts = {}) {
  using T = typename DQ::Scalar;
  detail::one_head_backward<T> io(q.derived(), k.derived(), v.derived(), forward, dout.derived(), "salt::attention_backward");
  attention_backward<T>(io.view(io.q), io.view(io.k), io.view(io.v), io.view(io.out), io.lse_in(), io.view(io.dout),
                        tensor_view<T>::of(io.g.dq), tensor_view<T>::of(io.g.dk), tensor_view<T>::of(io.g.dv), mask,
                        score, opts);
  return std::move(io.g);
}

/// One head's gradients and the gradient by the logits added into `dlogits` (as the multi-head overload; the head
/// is batch item 0, head 0 of the table).
template <class DQ, class DK, class DV, class DO, mask_policy Mask, differentiable_score_for<typename DQ::Scalar> Score>
attention_gradients<typename DQ::Scalar> attention_backward(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                                            const Eigen::MatrixBase<DV>& v,
                                                            const attention_result<typename DQ::Scalar>& forward,
                                                            const Eigen::MatrixBase<DO>& dout, const Mask& mask,
                                                            const Score& score, const run_options& opts,
                                                            const logit_gradient<typename DQ::Scalar>& dlogits) {
  using T = typename DQ::Scalar;
  detail::one_head_backward<T> io(q.derived(), k.derived(), v.derived(), forward, dout.derived(), "salt::attention_backward");
  attention_backward<T>(io.view(io.q), io.view(io.k), io.view(io.v), io.view(io.out), io.lse_in(), io.view(io.dout),
                        tensor_view<T>::of(io.g.dq), tensor_view<T>::of(io.g.dk), tensor_view<T>::of(io.g.dv), mask,
                        score, opts, dlogits);
  return std::move(io.g);
}

}  // namespace salt
