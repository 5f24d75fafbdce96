#pragma once
/// \file score/logit_gradient.hpp
/// Where attention_backward puts the gradient of the loss by the logits themselves, dS = P o (dP - D), for the
/// score sources that are a learned entry per (query, key) pair: bias_table and synthesizer_random. The gradient
/// of such a table is dS summed over the batch items and heads that share it, so the backward adds dS into a
/// buffer laid out as the table (`policy.gradient_into(buffer)`), and training a Synthesizer or a bias needs
/// nothing else:
///
///     auto dtable = salt::row_matrix<float>::Zero(max_len, max_len).eval();
///     salt::attention_backward(q, k, v, fwd, dout, mask, synth, {}, synth.gradient_into(dtable.data()));
///
/// The gradient is by the logit before any transform that is not additive except soft-capping of the whole sum
/// (logit_gradient_reaches): softcap(dot + table) gives the table its gradient through the cap's slope, while a
/// table added after a cap would not be differentiated by the cap, and does not compile.

#include <type_traits>

#include "../config.hpp"
#include "../error.hpp"
#include "../mask/concept.hpp"
#include "../tensor.hpp"
#include "concept.hpp"
#include "softcap.hpp"

namespace salt {

/// A buffer laid out as a per-pair score table, into which attention_backward adds d loss / d logit:
/// entry (b, h, i, j) of a call, query i and key j, is data[b * batch_stride + h * head_stride + (row_offset + i) *
/// row_stride + j]. Strides of 0 share one table across batch items or heads (their gradients are summed, in a
/// fixed order). Added to, never overwritten: zero it first, or let it accumulate over micro-batches.
template <class T>
struct logit_gradient {
  T* data = nullptr;  ///< entry (0, 0, 0, 0); viewed, not owned
  /// One table's rows and columns (at least row_offset + Lq and Lk of the call).
  /// @{
  index rows = 0, cols = 0;
  /// @}
  /// Elements from one row, head and batch item of the table to the next; 0 shares it.
  /// @{
  index row_stride = 0, head_stride = 0, batch_stride = 0;
  /// @}
  index row_offset = 0;  ///< the table row of query 0 (synthesizer_random's query_offset)

  /// The entries a call of `dims` adds to, as a view (batch, heads, Lq rows of Lk): for the overlap checks.
  tensor_view<T> region(const problem_dims& dims) const noexcept {
    return {data + row_offset * row_stride, dims.batch, dims.q_heads, dims.lq, dims.lk, batch_stride, head_stride,
            row_stride};
  }
};

namespace detail {

/// Whether attention_backward's dS is the gradient by Score's additive terms: Score is additive, or soft-capping
/// of an additive sum (dS then carries the cap's slope, which is the chain rule for every term under it).
template <class Score>
inline constexpr bool logit_gradient_reaches = is_additive_score<Score>();
template <class Inner>
inline constexpr bool logit_gradient_reaches<softcap<Inner>> = is_additive_score<Inner>();

/// The checks of a logit gradient against a call: its extent covers the call's queries and keys, its strides are
/// non-negative, and tables that are not shared (a stride > 0) do not overlap one another, since each is written
/// by its own work item.
template <class T>
void check_logit_gradient(const logit_gradient<T>& g, const problem_dims& dims, const char* api) {
  require(g.rows >= 0 && g.cols >= 0 && g.row_offset >= 0 && g.row_stride >= 0 && g.head_stride >= 0 &&
              g.batch_stride >= 0,
          api, ": the logit gradient has a negative size, offset or stride");
  require(g.row_offset + dims.lq <= g.rows && dims.lk <= g.cols, api, ": the logit gradient is ", g.rows, " x ",
          g.cols, " but the call needs rows ", g.row_offset, " to ", g.row_offset + dims.lq, " and ", dims.lk,
          " columns");
  require(g.data != nullptr || dims.batch * dims.q_heads * dims.lq * dims.lk == 0, api,
          ": the logit gradient is null");
  require(g.row_stride >= g.cols || g.rows <= 1, api, ": the logit gradient's rows overlap (row_stride ",
          g.row_stride, " < ", g.cols, " columns)");
  const index table = g.rows > 0 ? (g.rows - 1) * g.row_stride + g.cols : 0;
  require(g.head_stride == 0 || dims.q_heads <= 1 || g.head_stride >= table, api,
          ": the logit gradient's heads overlap (head_stride ", g.head_stride, " < one table's ", table,
          " elements); give each head its own table or share one with head_stride 0");
  const index heads = g.head_stride == 0 ? table : (dims.q_heads - 1) * g.head_stride + table;
  require(g.batch_stride == 0 || dims.batch <= 1 || g.batch_stride >= heads, api,
          ": the logit gradient's batch items overlap (batch_stride ", g.batch_stride, " < ", heads, " elements)");
}

}  // namespace detail
}  // namespace salt
