#pragma once
/// \file score/dot_product.hpp
/// `dot_product`: logits are scale * q.k, the standard attention score.

#include <cmath>
#include <optional>

#include "concept.hpp"

namespace salt {

/// Scaled dot product. The default scale is 1/sqrt(d) (1 when d = 0, where every logit is 0).
struct dot_product {
  std::optional<double> scale;

  static constexpr bool uses_dot_product() { return true; }
  static constexpr bool is_identity() { return true; }
  double dot_scale(index d) const noexcept {
    if (scale) return *scale;
    return d > 0 ? 1.0 / std::sqrt(static_cast<double>(d)) : 1.0;
  }
  template <class T>
  void apply(const logit_tile<T>&, const problem_shape&) const noexcept {}
};

}  // namespace salt
