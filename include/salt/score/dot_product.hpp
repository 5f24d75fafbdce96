#pragma once
/// \file score/dot_product.hpp
/// `dot_product`: logits are scale * q.k, the standard attention score.

#include <cmath>
#include <optional>

#include "concept.hpp"

namespace salt {

/// Scaled dot product. The default scale is 1/sqrt(d) (1 when d = 0, where every logit is 0).
struct dot_product {
  std::optional<double> scale;  ///< the logit is scale * q.k; empty: 1/sqrt(d)

  /// score_policy_for: the engine computes the tile as dot_scale(d) * q.k.
  static constexpr bool uses_dot_product() { return true; }
  /// score_policy_for: `apply` does nothing.
  static constexpr bool is_identity() { return true; }
  /// differentiable_score_for: the logits' derivative by the scaled dot product is 1.
  static constexpr bool is_additive() { return true; }
  /// The scale for key width d: `scale`, else 1/sqrt(d) (1 for d = 0).
  double dot_scale(index d) const noexcept {
    if (scale) return *scale;
    return d > 0 ? 1.0 / std::sqrt(static_cast<double>(d)) : 1.0;
  }
  /// score_policy_for: leaves the tile as the engine computed it.
  template <class T>
  void apply(const logit_tile<T>&, const problem_shape&) const noexcept {}
};

}  // namespace salt
