#pragma once
/// \file gradients.hpp
/// What every backward pass shares: the gradients of one head (attention_gradients), the checks of a backward
/// call's views, and the one-head front door that binds Eigen matrices as views. The passes themselves:
/// attention_backward.hpp (exact attention), linformer_backward.hpp, linear_backward.hpp.

#include <Eigen/Core>

#include <type_traits>

#include "config.hpp"
#include "detail/checks.hpp"
#include "detail/one_head.hpp"
#include "error.hpp"
#include "merge.hpp"
#include "run_options.hpp"
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
/// The checks of a backward call: the forward's shapes (check_qkv; `family` names the pass in its messages),
/// out and dout as the forward's output, gradients shaped as their inputs, and no gradient over an input or
/// another gradient.
template <class T>
void check_backward(const tensor_view<const T>& q, const tensor_view<const T>& k, const tensor_view<const T>& v,
                    const tensor_view<const T>& out, const tensor_view<const T>& dout, const tensor_view<T>& dq,
                    const tensor_view<T>& dk, const tensor_view<T>& dv, const run_options& opts, const char* api,
                    const char* family) {
  check_qkv(q, k, v, out, opts, api, family);  // out must not overlap q, k or v either
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
  const tensor_view<const T> dq_c = dq, dk_c = dk, dv_c = dv;
  require(!overlaps(dq_c, dk_c) && !overlaps(dq_c, dv_c) && !overlaps(dk_c, dv_c), api,
          ": dq, dk and dv must not overlap one another");
  for (const tensor_view<const T>* g : {&dq_c, &dk_c, &dv_c})
    require(!overlaps(*g, q) && !overlaps(*g, k) && !overlaps(*g, v) && !overlaps(*g, out) && !overlaps(*g, dout), api,
            ": a gradient overlaps an input; ", family, " cannot run in place");
}

/// The same and the forward's LSE, which the exact passes recompute their probabilities from.
template <class T>
void check_backward(const tensor_view<const T>& q, const tensor_view<const T>& k, const tensor_view<const T>& v,
                    const tensor_view<const T>& out, const lse_view<const T>& lse, const tensor_view<const T>& dout,
                    const tensor_view<T>& dq, const tensor_view<T>& dk, const tensor_view<T>& dv,
                    const run_options& opts, const char* api) {
  check_backward(q, k, v, out, dout, dq, dk, dv, opts, api, "attention_backward");
  require(lse.data != nullptr || q.batch * q.heads * q.tokens == 0, api,
          ": the forward's LSE is required (pass the lse_view the forward wrote)");
}

/// A one-head backward call's inputs bound as row-major views (read in place; other layouts copied once), the
/// forward's LSE (where the pass takes one) checked against q, and gradients allocated as their inputs: the
/// front door of every family's one-head backward.
template <class T>
struct one_head_backward {
  matrix_cref<T> q, k, v, dout, out;
  const T* lse = nullptr;
  attention_gradients<T> g;

  /// A pass that recomputes from the forward's output and LSE (exact attention, Linformer).
  template <class DQ, class DK, class DV, class DO>
  one_head_backward(const DQ& q_, const DK& k_, const DV& v_, const attention_result<T>& forward, const DO& dout_,
                    const char* api)
      : one_head_backward(q_, k_, v_, forward.out, dout_) {
    require(forward.lse.size() == q.rows(), api, ": the forward's LSE has ", forward.lse.size(), " rows but q has ",
            q.rows());
    lse = forward.lse.data();
  }
  /// A pass that needs the forward's output only (linear attention).
  template <class DQ, class DK, class DV, class DOut, class DO>
  one_head_backward(const DQ& q_, const DK& k_, const DV& v_, const DOut& out_, const DO& dout_)
      : q(q_), k(k_), v(v_), dout(dout_), out(out_),
        g{row_matrix<T>(q.rows(), q.cols()), row_matrix<T>(k.rows(), k.cols()), row_matrix<T>(v.rows(), v.cols())} {
    static_assert(std::is_same_v<T, typename DK::Scalar> && std::is_same_v<T, typename DV::Scalar> &&
                      std::is_same_v<T, typename DO::Scalar> && std::is_same_v<T, typename DOut::Scalar>,
                  "salt's backward passes: q, k, v, out and dout must have the same scalar type.");
  }
  tensor_view<const T> view(const matrix_cref<T>& m) const noexcept { return head_as_view<T>(m); }
  lse_view<const T> lse_in() const noexcept { return {lse, 0, 0}; }
};
}  // namespace detail

}  // namespace salt
