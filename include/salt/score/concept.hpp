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

}  // namespace salt
