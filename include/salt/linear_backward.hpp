#pragma once
/// \file linear_backward.hpp
/// Gradients of kernelized linear attention (linear.hpp) by Q, K and V, through every shipped feature map
/// (FAVOR+, trigonometric, ReLU with or without a projection, elu + 1) and any user map with a backward
/// (differentiable_feature_map), non-causal and causal (chunked, GEMM-shaped: O(L m (d + dv)) plus O(L C (m +
/// dv)) for each chunk's own keys, no per-token rank-1 loops), with key padding and grouped-query heads.
///
///     salt::favor_plus<float> phi(salt::random_features<float>::orthogonal(256, 64, /*seed=*/7));
///     auto out = salt::linear_attention(q, k, v, phi, salt::causal{});
///     auto g = salt::linear_attention_backward(q, k, v, out, dout, phi, salt::causal{});  // g.dq, g.dk, g.dv
///
/// What is not differentiated: the map's random features W are fixed (no gradient by W), and the recurrent
/// state of decoding (linear/recurrent_state.hpp) has no backward: train with the chunked call, decode with
/// the state. The steps and their stabilisation: linear/backward.hpp.
///
/// Deterministic: a work item is one K/V head with the query heads that read it; it owns the head's dk and dv
/// and its query heads' dq, and sums them in a fixed order, so gradients are bit for bit the same for any
/// number of threads.

#include <Eigen/Core>

#include <algorithm>
#include <type_traits>
#include <utility>

#include "config.hpp"
#include "detail/checks.hpp"
#include "detail/parallel.hpp"
#include "error.hpp"
#include "gradients.hpp"
#include "linear/attention.hpp"
#include "linear/backward.hpp"
#include "linear/feature_map.hpp"
#include "mask.hpp"
#include "run_options.hpp"
#include "tensor.hpp"

namespace salt {

namespace detail {

/// Every (batch item, K/V head) of a backward call, one work item each.
template <class T, class Mask, class Map>
void linear_backward_impl(const tensor_view<const T>& q, const tensor_view<const T>& k, const tensor_view<const T>& v,
                          const tensor_view<const T>& out, const tensor_view<const T>& dout, const tensor_view<T>& dq,
                          const tensor_view<T>& dk, const tensor_view<T>& dv, const Map& map, const Mask& mask,
                          const run_options& opts) {
  const index B = q.batch, Hq = q.heads, Hkv = k.heads, group = Hkv > 0 ? Hq / Hkv : 0, items = B * Hkv;
  if (items == 0) return;
  const index C = linear_default_chunk, m = map.features(q.features);
  auto make_workspace = [&] { return linear_backward_workspace<T>(C, m, q.features, v.features, q.tokens); };
  parallel_for(items, thread_count(opts.threads, items), make_workspace, [&](index it, linear_backward_workspace<T>& w) {
    const index b = it / Hkv, g = it % Hkv;
    const head_view<const T> kh = k.head(b, g), vh = v.head(b, g);
    const head_view<T> dkh = dk.head(b, g), dvh = dv.head(b, g);
    const index len = valid_keys_of(mask, problem_shape{q.tokens, k.tokens, b, 0});
    auto heads = [&](index h) {
      const index qh = g * group + h;
      return linear_grad_views<T>{q.head(b, qh), out.head(b, qh), dout.head(b, qh), dq.head(b, qh)};
    };
    for (index j = 0; j < kh.rows; ++j) {  // the steps add to dk and dv; keys nobody sees keep these zeros
      std::fill_n(dkh.row(j), kh.cols, T(0));
      std::fill_n(dvh.row(j), vh.cols, T(0));
    }
    if constexpr (prefix_mask<Mask>) {
      if (q.tokens == 0) return;
      const index shift = mask.last_key(0, problem_shape{q.tokens, k.tokens, b, 0});
      for (index h = 0; h < group; ++h) causal_backward(map, w, heads(h), kh, vh, dkh, dvh, shift, len);
    } else {
      noncausal_backward(map, w, kh, vh, dkh, dvh, len, group, heads);
    }
  });
}

}  // namespace detail

/// Gradients of multi-head linear attention over strided views: dq, dk and dv of a loss whose gradient by the
/// forward's output is dout. out is what salt::linear_attention wrote for the same q, k, v, map and mask.
///
/// Shapes: q (B, Hq, Lq, d), k (B, Hkv, Lk, d), v (B, Hkv, Lk, dv), out and dout (B, Hq, Lq, dv), dq as q, dk
/// as k, dv as v; Hkv divides Hq (dk and dv sum over the query heads of a group). `mask` as for
/// linear_attention: no_mask, key_padding, causal (any alignment and offset), causal & key_padding, a user's
/// prefix-shaped or key-only mask. Keys no query sees, and rows under the forward's denominator guard, get
/// zero gradients. A NaN reaches only the gradients that depend on it.
///
/// Time: 2.3 to 3.1 times the forward's on the device's Xeon (README: Benchmarks), O((Lq + Lk) m (d + dv)) per
/// head plus O(Lq C (m + dv)) in the causal form.
/// Memory beyond the gradients: a workspace per thread of O(m (dv + C) + C (d + C) + Lq dv) values. Threads
/// run over the B * Hkv items; one head runs on one thread. Throws salt::error naming
/// salt::linear_attention_backward for mismatched shapes, a gradient overlapping an input or another
/// gradient, negative threads, or a map or mask that fails its check; nothing is written then.
template <class T, class Map, class Mask = no_mask>
  requires(std::is_same_v<T, float> || std::is_same_v<T, double>) && differentiable_feature_map<Map, T>
void linear_attention_backward(const input_view<T>& q, const input_view<T>& k, const input_view<T>& v,
                               const input_view<T>& out, const input_view<T>& dout, const tensor_view<T>& dq,
                               const tensor_view<T>& dk, const tensor_view<T>& dv, const Map& map,
                               const Mask& mask = {}, const run_options& opts = {}) {
  detail::check_linear_mask<Mask>();
  constexpr const char* api = "salt::linear_attention_backward";
  detail::check_backward(q, k, v, out, dout, dq, dk, dv, opts, api, "linear_attention_backward");
  detail::check_policies(detail::dims_of(q, k, v), api, mask);
  detail::check_valid_keys(mask, k.batch, q.tokens, k.tokens, api);
  detail::check_feature_map(map, q.features, api);
  detail::linear_backward_impl<T>(q, k, v, out, dout, dq, dk, dv, map, mask, opts);
}

/// Gradients of one head's linear attention: q (Lq, d), k (Lk, d), v (Lk, dv), the forward's output out (Lq,
/// dv; linear_attention with the same map and mask) and dout (Lq, dv). Row-major inputs are read in place;
/// others are copied once. Cost and errors as the multi-head overload.
template <class DQ, class DK, class DV, class DOut, class DO, class Map, class Mask = no_mask>
  requires differentiable_feature_map<Map, typename DQ::Scalar>
attention_gradients<typename DQ::Scalar> linear_attention_backward(const Eigen::MatrixBase<DQ>& q,
                                                                   const Eigen::MatrixBase<DK>& k,
                                                                   const Eigen::MatrixBase<DV>& v,
                                                                   const Eigen::MatrixBase<DOut>& out,
                                                                   const Eigen::MatrixBase<DO>& dout, const Map& map,
                                                                   const Mask& mask = {}, const run_options& opts = {}) {
  using T = typename DQ::Scalar;
  detail::one_head_backward<T> io(q.derived(), k.derived(), v.derived(), out.derived(), dout.derived());
  linear_attention_backward<T>(io.view(io.q), io.view(io.k), io.view(io.v), io.view(io.out), io.view(io.dout),
                               tensor_view<T>::of(io.g.dq), tensor_view<T>::of(io.g.dk), tensor_view<T>::of(io.g.dv),
                               map, mask, opts);
  return std::move(io.g);
}

}  // namespace salt
