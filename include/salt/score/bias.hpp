#pragma once
/// \file score/bias.hpp
/// Additive score sources: an explicit bias table and ALiBi. Add them to the dot product with `+`:
/// `dot_product{} + alibi{slopes}`.

#include <Eigen/Core>

#include <cstdlib>
#include <type_traits>

#include "../borrowed_span.hpp"
#include "../error.hpp"
#include "concept.hpp"
#include "logit_gradient.hpp"

namespace salt {

/// Adds bias(b, h, i, j) = data[b * batch_stride + h * head_stride + i * row_stride + j] to logit (i, j).
/// Strides of 0 share the table across batch items or heads. The table is not copied: it must outlive the
/// call.
template <class T>
struct bias_table {
  const T* data = nullptr;  ///< bias (0, 0, 0, 0); viewed, not owned
  /// The table's shape, which must equal (Lq, Lk).
  /// @{
  index rows = 0, cols = 0;
  /// @}
  /// Elements from one query row, head and batch item of the table to the next; 0 shares it.
  /// @{
  index row_stride = 0, head_stride = 0, batch_stride = 0;
  /// @}

  /// One (Lq, Lk) table shared by every batch item and head, from a row-major matrix or a view of one
  /// (a Map, a Block). A temporary matrix would be freed before the policy is used: a compile error.
  template <class Derived>
  static bias_table shared(Derived&& m) {
    using matrix = std::remove_cvref_t<Derived>;
    static_assert(static_cast<int>(matrix::IsRowMajor), "salt::bias_table::shared needs a row-major (Lq, Lk) matrix.");
    static_assert(std::is_lvalue_reference_v<Derived> || !std::is_base_of_v<Eigen::PlainObjectBase<matrix>, matrix>,
                  "salt::bias_table views its table, which must outlive the call: keep it in a variable, not a "
                  "temporary.");
    return {m.data(), m.rows(), m.cols(), m.outerStride(), 0, 0};
  }

  /// score_policy_for: no dot product of its own (add it with `dot_product{} + table`).
  static constexpr bool uses_dot_product() { return false; }
  /// score_policy_for: `apply` adds the bias.
  static constexpr bool is_identity() { return false; }
  /// differentiable_score_for: the logits' derivative by the scaled dot product is 1.
  static constexpr bool is_additive() { return true; }
  /// Unused: the policy has no dot product.
  double dot_scale(index) const noexcept { return 0; }

  /// Adds the table's entries of the tile's (query, key) pairs to its logits; O(queries * keys).
  template <class U>
  void apply(const logit_tile<U>& t, const problem_shape& p) const noexcept {
    const T* base = data + p.batch * batch_stride + p.head * head_stride + t.q_begin * row_stride + t.k_begin;
    for (index j = 0; j < t.keys; ++j) {
      U* row = t.key_row(j);
      for (index i = 0; i < t.queries; ++i) row[i] += static_cast<U>(base[i * row_stride + j]);
    }
  }

  /// Where attention_backward adds the table's gradient (score/logit_gradient.hpp): a buffer laid out as the
  /// table, with its strides (not copied: it must outlive the call). Throws salt::error when it is the table.
  logit_gradient<T> gradient_into(T* buffer) const {
    detail::require(buffer != data, "salt::bias_table::gradient_into: the gradient's buffer is the table itself");
    return {buffer, rows, cols, row_stride, head_stride, batch_stride, 0};
  }

  /// Throws salt::error naming `api` when the table is not (Lq, Lk).
  void check(const problem_dims& dims, const char* api) const {
    detail::require(rows == dims.lq && cols == dims.lk, api, ": bias_table is ", rows, " x ", cols,
                    " but the scores are ", dims.lq, " x ", dims.lk);
  }
};

/// ALiBi (Press et al.): adds -slope[h] * |i' - j| where i' = i + (Lk - Lq) is the query's position on
/// the key axis (bottom-right alignment, as causal uses). Under a causal mask this is slope * (j - i'),
/// the published form. The slopes are not copied: they must outlive the call (a temporary container is a
/// compile error).
struct alibi {
  borrowed_span<const double> slopes = {};  ///< (q_heads): one per query head

  /// score_policy_for: no dot product of its own (add it with `dot_product{} + alibi{slopes}`).
  static constexpr bool uses_dot_product() { return false; }
  /// score_policy_for: `apply` adds the linear bias.
  static constexpr bool is_identity() { return false; }
  /// differentiable_score_for: the logits' derivative by the scaled dot product is 1.
  static constexpr bool is_additive() { return true; }
  /// Unused: the policy has no dot product.
  double dot_scale(index) const noexcept { return 0; }

  /// Subtracts slopes[h] * |i' - j| from each logit of the tile; O(queries * keys).
  template <class U>
  void apply(const logit_tile<U>& t, const problem_shape& p) const noexcept {
    const U slope = static_cast<U>(slopes[p.head]);
    const index shift = p.lk - p.lq + t.q_begin - t.k_begin;  // query position minus key position at (0, 0)
    for (index j = 0; j < t.keys; ++j) {
      U* row = t.key_row(j);
      for (index i = 0; i < t.queries; ++i) row[i] -= slope * static_cast<U>(std::abs(shift + i - j));
    }
  }

  /// Throws salt::error naming `api` when there are fewer slopes than query heads.
  void check(const problem_dims& dims, const char* api) const {
    detail::require(static_cast<index>(slopes.size()) >= dims.q_heads, api, ": alibi has ", slopes.size(),
                    " slopes for ", dims.q_heads, " query heads");
  }
};

}  // namespace salt
