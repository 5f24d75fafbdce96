#pragma once
/// \file score/softcap.hpp
/// `softcap`: squashes logits into (-cap, cap) with cap * tanh(s / cap), as Gemma 2 and Grok do.

#include <Eigen/Core>

#include "../error.hpp"
#include "concept.hpp"
#include "dot_product.hpp"

namespace salt {

/// Soft-capping of another score policy's logits: s -> cap * tanh(s / cap).
template <class Inner = dot_product>
struct softcap {
  double cap = 50.0;                    ///< the bound of the logits, > 0
  [[no_unique_address]] Inner inner{};  ///< the policy whose logits are capped

  /// score_policy_for: as `inner`.
  static constexpr bool uses_dot_product() { return Inner::uses_dot_product(); }
  /// score_policy_for: `apply` caps.
  static constexpr bool is_identity() { return false; }
  /// `inner`'s scale.
  double dot_scale(index d) const noexcept { return inner.dot_scale(d); }

  /// Applies `inner`, then cap * tanh(s / cap) to every logit of the tile; O(queries * keys).
  template <class U>
  void apply(const logit_tile<U>& t, const problem_shape& p) const noexcept {
    inner.apply(t, p);
    const U c = static_cast<U>(cap), inv = U(1) / c;
    for (index j = 0; j < t.keys; ++j) {
      // Eigen's array tanh is vectorised for float.
      Eigen::Map<Eigen::Array<U, Eigen::Dynamic, 1>> row(t.key_row(j), t.queries);
      row = c * (row * inv).tanh();
    }
  }

  /// differentiable_score_for: `apply`, and the slope times d/ds [cap tanh(s / cap)] = 1 - tanh^2(s / cap).
  template <class U>
  void apply_with_slope(const logit_tile<U>& t, const logit_tile<U>& slope, const problem_shape& p) const noexcept
    requires differentiable_score_for<Inner, U>
  {
    detail::apply_with_slope(inner, t, slope, p);
    const U c = static_cast<U>(cap), inv = U(1) / c;
    for (index j = 0; j < t.keys; ++j) {
      Eigen::Map<Eigen::Array<U, Eigen::Dynamic, 1>> row(t.key_row(j), t.queries), d(slope.key_row(j), t.queries);
      // The slope from t = tanh(s / cap) itself, as (1 - t)(1 + t): 1 - t is exact for t >= 1/2, where
      // 1 - (capped / cap)^2 rounded t twice more before it cancelled. The logits are cap * t, the bits of `apply`.
      row = (row * inv).tanh();
      d *= (U(1) - row) * (U(1) + row);
      row *= c;
    }
  }
  /// Throws salt::error naming `api` when cap <= 0 (or NaN), then runs `inner`'s check.
  void check(const problem_dims& dims, const char* api) const {
    detail::require(cap > 0, api, ": softcap cap must be positive, got ", cap);
    if constexpr (requires { inner.check(dims, api); }) inner.check(dims, api);
  }
};

/// `salt::softcap{30.0}` caps the scaled dot product.
softcap(double) -> softcap<dot_product>;

}  // namespace salt
