#pragma once
/// \file score/concept.hpp
/// What a score policy is: where the logits of a tile come from. The engine computes `scale * q.k` when
/// the policy uses the dot product (zeros otherwise), then lets the policy add to or transform the tile.

#include <cmath>
#include <concepts>
#include <type_traits>

#include "../config.hpp"
#include "../mask/concept.hpp"

namespace salt {

/// A tile of logits, laid out key-major: `at(i, j)` is the logit of query q_begin + i against key
/// k_begin + j, stored at data[j * stride + i]. Key-major because the engine vectorises across queries.
template <class T>
struct logit_tile {
  T* data = nullptr;  ///< the engine's workspace: (keys, stride), key-major; valid during `apply` only
  index stride = 0;   ///< elements from one key's row of logits to the next (>= queries)
  /// The tile's first query and first key (positions in the sequence).
  /// @{
  index q_begin = 0, k_begin = 0;
  /// @}
  /// The tile's extent: queries q_begin ... q_begin + queries - 1, keys k_begin ... k_begin + keys - 1.
  /// @{
  index queries = 0, keys = 0;
  /// @}

  /// The logit of query q_begin + i against key k_begin + j.
  T& at(index i, index j) const noexcept { return data[j * stride + i]; }
  /// The logits of key k_begin + j against queries q_begin ... q_begin + queries - 1, contiguous.
  T* key_row(index j) const noexcept { return data + j * stride; }
};

/// A score policy for scalar type T: `uses_dot_product()` says whether the engine should fill the tile
/// with `dot_scale(d) * q.k` first (a constant expression), `apply` then adds to or transforms it.
/// `is_identity()` (a constant expression too) lets the engine skip `apply`. This tile form is the fast
/// one; for a function of one logit and its position, `elementwise_score{f}` writes the members.
template <class S, class T>
concept score_policy_for = std::is_trivially_copyable_v<S> &&
    requires(const S& s, const logit_tile<T>& t, const problem_shape& p, index d) {
  { S::uses_dot_product() } -> std::same_as<bool>;
  typename std::bool_constant<S::uses_dot_product()>;  // must be a constant expression
  { S::is_identity() } -> std::same_as<bool>;          // true when `apply` does nothing
  { s.dot_scale(d) } -> std::convertible_to<double>;
  { s.apply(t, p) } noexcept;
};

/// A score policy usable in both precisions (every policy the library ships).
template <class S>
concept score_policy = score_policy_for<S, float> && score_policy_for<S, double>;

namespace detail {
/// Whether S declares `is_additive()` true: its `apply` only adds terms that do not depend on the tile's
/// values (biases, tables), so the derivative of each logit by the scaled dot product is 1.
template <class S>
constexpr bool is_additive_score() noexcept {
  if constexpr (requires { S::is_additive(); }) return S::is_additive();
  else return false;
}
}  // namespace detail

/// A score policy the backward pass can differentiate (attention_backward.hpp): additive (`is_additive()`),
/// or one that transforms its tile and says how, `apply_with_slope(tile, slope, where)`: it applies itself as
/// `apply` does and multiplies each entry of `slope` (laid out as the tile) by the derivative of its output
/// logit by its input logit, so that the engine's slope tile, started at 1, ends as d logit / d (scaled q.k).
template <class S, class T>
concept differentiable_score_for =
    score_policy_for<S, T> &&
    (detail::is_additive_score<S>() ||
     requires(const S& s, const logit_tile<T>& t, const problem_shape& p) { { s.apply_with_slope(t, t, p) } noexcept; });

namespace detail {
/// Applies `s` to tile t and its derivative to `slope` (differentiable_score_for): an additive policy leaves the
/// slope as it is.
template <class S, class T>
void apply_with_slope(const S& s, const logit_tile<T>& t, const logit_tile<T>& slope, const problem_shape& p) noexcept {
  if constexpr (is_additive_score<S>()) (void)slope, s.apply(t, p);
  else s.apply_with_slope(t, slope, p);
}
}  // namespace detail

}  // namespace salt
