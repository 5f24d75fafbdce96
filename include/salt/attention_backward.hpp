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

#include <Eigen/Core>

#include <type_traits>
#include <utility>

#include "config.hpp"
#include "detail/checks.hpp"
#include "detail/engine_backward.hpp"
#include "detail/one_head.hpp"
#include "error.hpp"
#include "mask.hpp"
#include "merge.hpp"
#include "run_options.hpp"
#include "score.hpp"
#include "tensor.hpp"

namespace salt {

/// The gradients of one head's attention by its inputs, owned: dq (Lq, d), dk (Lk, d), dv (Lk, dv).
template <class T>
struct attention_gradients {
  row_matrix<T> dq;  ///< (Lq, d)
  row_matrix<T> dk;  ///< (Lk, d)
  row_matrix<T> dv;  ///< (Lk, dv)
};

namespace detail {
/// The checks of attention_backward: the forward's shapes (check_qkv), out and dout as the forward's output,
/// an LSE, gradients shaped as their inputs, and no gradient over an input or another gradient.
template <class T>
void check_backward(const tensor_view<const T>& q, const tensor_view<const T>& k, const tensor_view<const T>& v,
                    const tensor_view<const T>& out, const lse_view<const T>& lse, const tensor_view<const T>& dout,
                    const tensor_view<T>& dq, const tensor_view<T>& dk, const tensor_view<T>& dv,
                    const run_options& opts, const char* api) {
  check_qkv(q, k, v, out, opts, api, "attention_backward");  // out must not overlap q, k or v either
  check_view(dout, api, "dout");
  check_view(dq, api, "dq");
  check_view(dk, api, "dk");
  check_view(dv, api, "dv");
  const auto same = [&](const auto& x, const auto& like, const char* name, const char* as) {
    require(x.batch == like.batch && x.heads == like.heads && x.tokens == like.tokens && x.features == like.features,
            api, ": ", name, " is (", x.batch, ", ", x.heads, ", ", x.tokens, ", ", x.features, ") but must be (",
            like.batch, ", ", like.heads, ", ", like.tokens, ", ", like.features, "), as ", as);
  };
  const tensor_view<const T> out_shape{nullptr, q.batch, q.heads, q.tokens, v.features, 0, 0, 0};
  same(dout, out_shape, "dout", "the forward's output (B, Hq, Lq, dv)");
  same(dq, q, "dq", "q");
  same(dk, k, "dk", "k");
  same(dv, v, "dv", "v");
  require(lse.data != nullptr || q.batch * q.heads * q.tokens == 0, api,
          ": the forward's LSE is required (pass the lse_view the forward wrote)");
  const tensor_view<const T> dq_c = dq, dk_c = dk, dv_c = dv;
  require(!overlaps(dq_c, dk_c) && !overlaps(dq_c, dv_c) && !overlaps(dk_c, dv_c), api,
          ": dq, dk and dv must not overlap one another");
  for (const tensor_view<const T>* g : {&dq_c, &dk_c, &dv_c})
    require(!overlaps(*g, q) && !overlaps(*g, k) && !overlaps(*g, v) && !overlaps(*g, out) && !overlaps(*g, dout), api,
            ": a gradient overlaps an input; attention_backward cannot run in place");
}
}  // namespace detail

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

namespace detail {
/// A one-head backward call's inputs bound as row-major views (read in place; other layouts copied once), the
/// forward's LSE checked against q, and gradients allocated as their inputs: the front door of every family's
/// one-head backward.
template <class T>
struct one_head_backward {
  matrix_cref<T> q, k, v, dout, out;
  const column<T>& lse;
  attention_gradients<T> g;

  template <class DQ, class DK, class DV, class DO>
  one_head_backward(const DQ& q_, const DK& k_, const DV& v_, const attention_result<T>& forward, const DO& dout_,
                    const char* api)
      : q(q_), k(k_), v(v_), dout(dout_), out(forward.out), lse(forward.lse),
        g{row_matrix<T>(q.rows(), q.cols()), row_matrix<T>(k.rows(), k.cols()), row_matrix<T>(v.rows(), v.cols())} {
    static_assert(std::is_same_v<T, typename DK::Scalar> && std::is_same_v<T, typename DV::Scalar> &&
                      std::is_same_v<T, typename DO::Scalar>,
                  "salt's backward passes: q, k, v and dout must have the same scalar type.");
    require(lse.size() == q.rows(), api, ": the forward's LSE has ", lse.size(), " rows but q has ", q.rows());
  }
  tensor_view<const T> view(const matrix_cref<T>& m) const noexcept { return head_as_view<T>(m); }
  lse_view<const T> lse_in() const noexcept { return {lse.data(), 0, 0}; }
};
}  // namespace detail

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

}  // namespace salt
