#pragma once
/// \file linear/feature_map.hpp
/// Feature maps of kernelized attention: the `feature_map` concept and the maps salt ships, Performer's
/// FAVOR+ positive features (`favor_plus`) and trigonometric features (`favor_trig`), the generalised ReLU
/// kernel (`relu_features`, with or without a projection) and elu(x) + 1 (`elu_plus_one`).
///
///     salt::favor_plus<float> phi(salt::random_features<float>::orthogonal(256, 64, /*seed=*/7));
///     salt::row_matrix<float> out = salt::linear_attention(q, k, v, phi);
///
/// A map writes features in a scaled form, phi(x) = exp(s(x)) * f(x): `f` (rows, m) into `phi` and, for
/// maps whose log_scaled() is true, the per-row log scale s into `log_scale`. The kernels use the scale to
/// stabilise: a query's scale cancels in the ratio out = phi(q) S / phi(q) z, and keys are weighted by
/// exp(s - r) against a running reference r (see linear/attention.hpp). Maps with log_scaled() false get
/// log_scale == nullptr and mean phi(x) = f(x).
///
/// A user-defined map is any copyable type with these members (T = float and double, or a template):
///
///     struct squared_relu {  // phi(x) = relu(x)^2 + 1/2, no scale
///       static constexpr bool log_scaled() { return false; }
///       salt::index features(salt::index d) const { return d; }
///       template <class T>
///       void map(const salt::feature_input<T>& x, salt::feature_output<T> phi, T*) const {
///         phi = (x.array().max(T(0)).square() + T(0.5)).matrix();
///       }
///     };
///
/// and optionally `void check(index d, const char* api) const`, which throws salt::error when the map
/// cannot take inputs of width d.

#include <Eigen/Core>

#include <cmath>
#include <concepts>
#include <type_traits>

#include "../config.hpp"
#include "../detail/gemm.hpp"
#include "../detail/simd.hpp"
#include "../error.hpp"
#include "../tensor.hpp"
#include "random_features.hpp"

namespace salt {

/// Rows of inputs a feature map reads: (rows, d), row-major with a row stride.
template <class T>
using feature_input = Eigen::Map<const row_matrix<T>, 0, Eigen::OuterStride<>>;
/// Where a feature map writes: (rows, features(d)), row-major with a row stride.
template <class T>
using feature_output = Eigen::Map<row_matrix<T>, 0, Eigen::OuterStride<>>;

/// A feature map for inputs of scalar type T: features(d) features per row, written by map(x, phi,
/// log_scale) in the scaled form described at the top of this header; log_scaled() must be a constant
/// expression.
template <class F, class T>
concept feature_map = std::copy_constructible<F> &&
                      requires(const F& f, index d, const feature_input<T>& x, feature_output<T> phi, T* log_scale) {
                        { F::log_scaled() } -> std::same_as<bool>;
                        typename std::bool_constant<F::log_scaled()>;
                        { f.features(d) } -> std::convertible_to<index>;
                        f.map(x, phi, log_scale);
                      };

/// A feature map that can carry a gradient back to its inputs (linear_backward.hpp): backward(x, f, g, dx)
/// writes dx (rows, d) = e^(-s(x)) J_phi(x)^T g, the gradient by x of a loss whose gradient by phi(x) is
/// e^(-s(x)) g, where f (rows, m) is what map() wrote for x and s its log scale (0 for maps without one). So
/// g is the gradient by the scaled features f, and neither side ever holds e^(s). g may be overwritten (it
/// is the map's scratch); x and f are not.
template <class F, class T>
concept differentiable_feature_map =
    feature_map<F, T> && requires(const F& f, const feature_input<T>& x, const feature_input<T>& phi,
                                  feature_output<T> g, feature_output<T> dx) { f.backward(x, phi, g, dx); };

namespace detail {

/// Checks a map against input width d: its own check() where it has one, and at least one feature.
template <class F>
void check_feature_map(const F& f, index d, const char* api) {
  if constexpr (requires { f.check(d, api); }) f.check(d, api);
  const index m = f.features(d);
  require(m >= 1, api, ": the feature map gives ", m, " features for d = ", d);
}

/// x[i] = e^(x[i] - top) for i < n, every x[i] <= top: the engine's vectorised exponential (a few ulp,
/// exact 0 for -inf), twice as fast here as Eigen's.
template <class T>
void exp_shifted(T* x, index n, T top) noexcept {
  using P = packet<T>;
  constexpr int N = lanes<T>;
  const P log2e = ei::pset1<P>(T(1.4426950408889634074)), shift = ei::pset1<P>(top);
  index i = 0;
  for (; i + N <= n; i += N) ei::pstoreu(x + i, pexp2<T>(ei::pmul(ei::psub(ei::ploadu<P>(x + i), shift), log2e)));
  for (; i < n; ++i) x[i] = std::exp(x[i] - top);
}

/// phi (rows, m) = x (rows, d) * wt, with wt = W^T (d, m) row-major: the maps keep their projection
/// transposed, so the product reads its rows in place.
template <class T>
void project_rows(const feature_input<T>& x, const row_matrix<T>& wt, feature_output<T>& phi) {
  gemm<T, false, false>(x.rows(), wt.cols(), x.cols(), x.data(), x.outerStride(), wt.data(), wt.cols(), phi.data(),
                        phi.outerStride(), gemm_update::overwrite);
}

/// (W d^(-1/4))^T (d, m) of random features W (m, d): the projection as the maps apply it.
template <class T>
row_matrix<T> scaled_transpose(const random_features<T>& w) {
  return w.matrix().transpose() * static_cast<T>(std::pow(static_cast<double>(w.d()), -0.25));
}

/// dx (+)= g wt^T: the gradient through the projection x -> x wt, for g (rows, m) and wt (d, m).
template <class T>
void project_back(const feature_output<T>& g, const row_matrix<T>& wt, feature_output<T>& dx, gemm_update update) {
  gemm<T, false, true>(g.rows(), wt.rows(), wt.cols(), g.data(), g.outerStride(), wt.data(), wt.cols(), dx.data(),
                       dx.outerStride(), update);
}

template <class T>
void check_projection_width(const row_matrix<T>& wt, index d, const char* api, const char* map) {
  require(wt.rows() == d, api, ": ", map, " was drawn for d = ", wt.rows(), " but the inputs have d = ", d);
}

}  // namespace detail

/// FAVOR+ positive random features (Performer): phi(x) = exp(W x' - |x'|^2 / 2) / sqrt(m), x' = x d^(-1/4),
/// so phi(q)^T phi(k) estimates exp(q^T k / sqrt(d)) without bias, and every feature is positive. Written
/// as f = exp(W x' - max(W x')) (each row's largest feature is 1) with log scale max(W x') - |x'|^2 / 2 -
/// log(m) / 2: no input overflows, however large.
template <class T>
class favor_plus {
 public:
  /// Keeps (W d^(-1/4))^T, a (d, m) copy of the features w (m, d): w need not outlive the map.
  explicit favor_plus(const random_features<T>& w) : wt_(detail::scaled_transpose(w)) {}

  /// feature_map: true, map() writes a log scale per row.
  static constexpr bool log_scaled() { return true; }
  /// feature_map: m, the rows of W.
  index features(index) const noexcept { return wt_.cols(); }
  /// Throws salt::error naming `api` unless W was drawn for inputs of width d.
  void check(index d, const char* api) const { detail::check_projection_width(wt_, d, api, "favor_plus"); }
  /// W d^(-1/4) (m, d): the projection as applied.
  auto scaled_projection() const noexcept { return wt_.transpose(); }

  /// feature_map: x (rows, d) -> f (rows, m) into phi and the log scale of each row into log_scale[0, rows);
  /// O(rows d m), no allocation.
  void map(const feature_input<T>& x, feature_output<T> phi, T* log_scale) const {
    detail::project_rows(x, wt_, phi);
    const T half_norm = static_cast<T>(0.5 / std::sqrt(static_cast<double>(x.cols())));  // |x'|^2 / 2 = |x|^2 * this
    const T log_norm = static_cast<T>(-0.5 * std::log(static_cast<double>(wt_.cols())));
    for (index r = 0; r < x.rows(); ++r) {
      const T top = phi.row(r).maxCoeff();
      detail::exp_shifted(phi.data() + r * phi.outerStride(), phi.cols(), top);
      log_scale[r] = top - x.row(r).squaredNorm() * half_norm + log_norm;
    }
  }

  /// differentiable_feature_map: phi = exp(W x' - |x'|^2 / 2) / sqrt(m) gives e^(-s) J^T g = (g o f) (W
  /// d^(-1/4)) - (g . f) x d^(-1/2); O(rows d m), no allocation; g is overwritten with g o f.
  void backward(const feature_input<T>& x, const feature_input<T>& f, feature_output<T> g,
                feature_output<T> dx) const {
    const T norm_slope = static_cast<T>(1 / std::sqrt(static_cast<double>(x.cols())));  // d |x'|^2 / 2 = x * this
    for (index r = 0; r < x.rows(); ++r) {
      g.row(r).array() *= f.row(r).array();
      dx.row(r) = x.row(r) * (-g.row(r).sum() * norm_slope);
    }
    detail::project_back(g, wt_, dx, detail::gemm_update::chain);
  }

 private:
  row_matrix<T> wt_;  // (d, m), (W d^(-1/4))^T
};

/// FAVOR trigonometric random features (Performer's sin/cos features): phi(x) = exp(|x'|^2 / 2) / sqrt(m)
/// [cos(W x'), sin(W x')], x' = x d^(-1/4); 2m features for an (m, d) W, so phi(q)^T phi(k) estimates
/// exp(q^T k / sqrt(d)) without bias. Features may be negative, and so may the estimated denominator:
/// outputs of rows whose denominator comes near zero are large (see the guard in linear/attention.hpp).
template <class T>
class favor_trig {
 public:
  /// Keeps (W d^(-1/4))^T, a (d, m) copy of the features w (m, d): w need not outlive the map.
  explicit favor_trig(const random_features<T>& w) : wt_(detail::scaled_transpose(w)) {}

  /// feature_map: true, map() writes a log scale per row.
  static constexpr bool log_scaled() { return true; }
  /// feature_map: 2m, cosines then sines.
  index features(index) const noexcept { return 2 * wt_.cols(); }
  /// Throws salt::error naming `api` unless W was drawn for inputs of width d.
  void check(index d, const char* api) const { detail::check_projection_width(wt_, d, api, "favor_trig"); }

  /// feature_map: x (rows, d) -> [cos(W x'), sin(W x')] (rows, 2m) into phi and the log scale of each row
  /// into log_scale[0, rows); O(rows d m), no allocation.
  void map(const feature_input<T>& x, feature_output<T> phi, T* log_scale) const {
    const index m = wt_.cols();
    feature_output<T> angles(phi.data(), x.rows(), m, Eigen::OuterStride<>(phi.outerStride()));
    detail::project_rows(x, wt_, angles);
    const T half_norm = static_cast<T>(0.5 / std::sqrt(static_cast<double>(x.cols())));
    const T log_norm = static_cast<T>(-0.5 * std::log(static_cast<double>(m)));
    for (index r = 0; r < x.rows(); ++r) {
      phi.row(r).tail(m) = phi.row(r).head(m).array().sin().matrix();
      phi.row(r).head(m) = phi.row(r).head(m).array().cos().matrix();
      log_scale[r] = x.row(r).squaredNorm() * half_norm + log_norm;
    }
  }

  /// differentiable_feature_map: phi = e^s [cos u, sin u], u = W x', s = |x'|^2 / 2 - log(m) / 2, gives
  /// e^(-s) J^T g = (g . f) x d^(-1/2) + (g_sin o cos u - g_cos o sin u) (W d^(-1/4)); O(rows d m), no
  /// allocation; g's cosine half is overwritten.
  void backward(const feature_input<T>& x, const feature_input<T>& f, feature_output<T> g,
                feature_output<T> dx) const {
    const index m = wt_.cols();
    const T norm_slope = static_cast<T>(1 / std::sqrt(static_cast<double>(x.cols())));
    for (index r = 0; r < x.rows(); ++r) {
      dx.row(r) = x.row(r) * (g.row(r).cwiseProduct(f.row(r)).sum() * norm_slope);
      g.row(r).head(m) = (g.row(r).tail(m).array() * f.row(r).head(m).array() -
                          g.row(r).head(m).array() * f.row(r).tail(m).array()).matrix();
    }
    feature_output<T> angles(g.data(), x.rows(), m, Eigen::OuterStride<>(g.outerStride()));
    detail::project_back(angles, wt_, dx, detail::gemm_update::chain);
  }

 private:
  row_matrix<T> wt_;  // (d, m), (W d^(-1/4))^T
};

/// Generalised ReLU kernel (Performer): phi(x) = relu(W x') + epsilon with W (m, d), or relu(x') + epsilon
/// with no projection (d features); x' = x d^(-1/4) as in Performer. epsilon > 0 keeps every feature,
/// and so every denominator, positive.
template <class T>
class relu_features {
 public:
  /// No projection: d features. Throws salt::error when epsilon < 0.
  explicit relu_features(T epsilon = T(1e-3)) : epsilon_(epsilon) { check_epsilon(); }
  /// Projected: m = w.m() features, from a (d, m) copy of w (w need not outlive the map). Throws
  /// salt::error when epsilon < 0.
  explicit relu_features(const random_features<T>& w, T epsilon = T(1e-3))
      : wt_(detail::scaled_transpose(w)), epsilon_(epsilon) {
    check_epsilon();
  }

  /// feature_map: false, no scale.
  static constexpr bool log_scaled() { return false; }
  /// feature_map: m with a projection, d without.
  index features(index d) const noexcept { return wt_.size() ? wt_.cols() : d; }
  /// Throws salt::error naming `api` when the projection was drawn for another width than d.
  void check(index d, const char* api) const {
    if (wt_.size()) detail::check_projection_width(wt_, d, api, "relu_features");
  }
  /// The constant added to every feature.
  T epsilon() const noexcept { return epsilon_; }

  /// differentiable_feature_map: the ReLU's slope is 1 where f > epsilon, 0 elsewhere (at a projection
  /// u > 0 too small to move u + epsilon off epsilon the computed feature is flat, and so is its slope), then
  /// back through the projection, or times d^(-1/4) without one; O(rows d m) projected, O(rows d) without.
  void backward(const feature_input<T>& x, const feature_input<T>& f, feature_output<T> g,
                feature_output<T> dx) const {
    g = (f.array() > epsilon_).select(g, T(0));
    if (wt_.size()) detail::project_back(g, wt_, dx, detail::gemm_update::overwrite);
    else dx = g * static_cast<T>(std::pow(static_cast<double>(x.cols()), -0.25));
  }

  /// feature_map: x (rows, d) -> phi (rows, features(d)); O(rows d m) projected, O(rows d) without.
  void map(const feature_input<T>& x, feature_output<T> phi, T*) const {
    if (wt_.size()) {
      detail::project_rows(x, wt_, phi);
      phi = (phi.array().max(T(0)) + epsilon_).matrix();
    } else {
      const T scale = static_cast<T>(std::pow(static_cast<double>(x.cols()), -0.25));
      phi = ((x.array() * scale).max(T(0)) + epsilon_).matrix();
    }
  }

 private:
  void check_epsilon() const {
    detail::require(epsilon_ >= T(0), "salt::relu_features: epsilon must be >= 0, got ", epsilon_);
  }

  row_matrix<T> wt_;  // (d, m), (W d^(-1/4))^T; empty without a projection
  T epsilon_;
};

/// elu(x) + 1 (Katharopoulos et al., "Transformers are RNNs", 2020): x + 1 for x > 0, exp(x) otherwise;
/// d positive features, no projection, no randomness.
struct elu_plus_one {
  /// feature_map: false, no scale.
  static constexpr bool log_scaled() { return false; }
  /// feature_map: d.
  index features(index d) const noexcept { return d; }
  /// feature_map: x (rows, d) -> phi (rows, d); O(rows d).
  template <class T>
  void map(const feature_input<T>& x, feature_output<T> phi, T*) const {
    // exp(min(x, 0)) + max(x, 0): x + 1 above zero (exp(0) is exactly 1), exp(x) at or below. Written
    // without select(), which Eigen evaluates one scalar std::exp at a time: this form vectorises, 5x faster.
    phi = (x.array().min(T(0)).exp() + x.array().max(T(0))).matrix();
  }
  /// differentiable_feature_map: the slope is exp(x) = f at or below zero and 1 above, min(f, 1); O(rows d).
  template <class T>
  void backward(const feature_input<T>&, const feature_input<T>& f, feature_output<T> g, feature_output<T> dx) const {
    dx = (g.array() * f.array().min(T(1))).matrix();
  }
};

}  // namespace salt
