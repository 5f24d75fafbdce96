#pragma once
/// \file linear/random_features.hpp
/// The random projection W (m, d) of the Performer feature maps: orthogonal random features (blocks of
/// Gaussian matrices orthonormalised, rows rescaled to chi-distributed norms or to sqrt(d)) or i.i.d.
/// Gaussian rows, drawn from salt::random_generator with an explicit seed, or given.
///
///     auto w = salt::random_features<float>::orthogonal(256, 64, /*seed=*/7);   // m = 256, d = 64
///     auto redrawn = salt::random_features<float>::orthogonal(256, 64, 8);      // redrawing = a new seed
///     salt::favor_plus<float> phi(w);
///
/// Nothing is redrawn behind the caller's back: an object holds one W for its whole life.

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../random.hpp"
#include "../tensor.hpp"

namespace salt {

/// Row norms of orthogonal random features.
enum class feature_norms {
  chi,     ///< each row rescaled to the norm of an independent d-dimensional Gaussian (chi with d degrees)
  sqrt_d,  ///< every row rescaled to sqrt(d), the expected squared norm's root ("regularised" in Performer)
};

/// W (m, d), row-major: one random feature per row. Owned (O(m d) memory); copies are deep. Every factory
/// throws salt::error naming it when m or d < 1.
template <class T>
class random_features {
 public:
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "salt::random_features holds float or double.");

  /// Orthogonal random features (Choromanski et al., 2021, section 2.4). Draw order: ceil(m / d) blocks,
  /// each d * d normal() draws row by row (a last block is drawn whole and its first m mod d rows kept);
  /// each block's rows are orthonormalised in order by modified Gram-Schmidt in double, run twice for
  /// orthogonality to rounding; then, for feature_norms::chi, m * d more draws, row by row, whose row norms
  /// scale the rows. The arithmetic is scalar, with explicit std::fma, so no compiler contraction or
  /// vectorisation changes a bit: W depends only on the seed and random_generator::normal(). Rounded to T
  /// last, so float and double features of one seed agree to rounding. Cost O(ceil(m / d) d^3).
  static random_features orthogonal(index m, index d, std::uint64_t seed, feature_norms norms = feature_norms::chi) {
    check_sizes(m, d, "salt::random_features::orthogonal");
    random_generator rng(seed);
    random_features f(m, d);
    std::vector<double> q(static_cast<std::size_t>(d * d));
    for (index b0 = 0; b0 < m; b0 += d) {
      for (double& x : q) x = rng.normal();
      orthonormalise_rows(q.data(), d);
      for (index r = 0; r < d && b0 + r < m; ++r)
        for (index c = 0; c < d; ++c) f.wd_[static_cast<std::size_t>((b0 + r) * d + c)] = q[static_cast<std::size_t>(r * d + c)];
    }
    for (index r = 0; r < m; ++r) {
      double norm = std::sqrt(static_cast<double>(d));
      if (norms == feature_norms::chi) {
        double s = 0;
        for (index c = 0; c < d; ++c) {
          const double g = rng.normal();
          s = std::fma(g, g, s);
        }
        norm = std::sqrt(s);
      }
      for (index c = 0; c < d; ++c) f.wd_[static_cast<std::size_t>(r * d + c)] *= norm;
    }
    f.round();
    return f;
  }

  /// I.i.d. features: m * d normal() draws, row by row; O(m d).
  static random_features gaussian(index m, index d, std::uint64_t seed) {
    check_sizes(m, d, "salt::random_features::gaussian");
    random_generator rng(seed);
    random_features f(m, d);
    for (double& x : f.wd_) x = rng.normal();
    f.round();
    return f;
  }

  /// A given W (m, d), copied.
  template <class Derived>
  static random_features from_matrix(const Eigen::MatrixBase<Derived>& w) {
    check_sizes(w.rows(), w.cols(), "salt::random_features::from_matrix");
    random_features f(w.rows(), w.cols());
    f.w_ = w.template cast<T>();
    return f;
  }

  index m() const noexcept { return w_.rows(); }        ///< number of random features (rows)
  index d() const noexcept { return w_.cols(); }        ///< input width
  const row_matrix<T>& matrix() const noexcept { return w_; }  ///< W (m, d)

 private:
  random_features(index m, index d) : w_(m, d), wd_(static_cast<std::size_t>(m * d)) {}

  static void check_sizes(index m, index d, const char* api) {
    detail::require(m >= 1 && d >= 1, api, ": m and d must be >= 1, got m = ", m, ", d = ", d);
  }

  /// Rows of q (n, n) made orthonormal in order: row i loses its components along rows 0..i-1 (modified
  /// Gram-Schmidt, twice), then is divided by its norm.
  static void orthonormalise_rows(double* q, index n) {
    for (index i = 0; i < n; ++i) {
      double* v = q + i * n;
      for (int pass = 0; pass < 2; ++pass)
        for (index j = 0; j < i; ++j) {
          const double* u = q + j * n;
          double dot = 0;
          for (index c = 0; c < n; ++c) dot = std::fma(u[c], v[c], dot);
          for (index c = 0; c < n; ++c) v[c] = std::fma(-dot, u[c], v[c]);
        }
      double s = 0;
      for (index c = 0; c < n; ++c) s = std::fma(v[c], v[c], s);
      const double norm = std::sqrt(s);
      for (index c = 0; c < n; ++c) v[c] /= norm;
    }
  }

  void round() {
    for (index r = 0; r < w_.rows(); ++r)
      for (index c = 0; c < w_.cols(); ++c) w_(r, c) = static_cast<T>(wd_[static_cast<std::size_t>(r * w_.cols() + c)]);
    wd_.clear();
    wd_.shrink_to_fit();
  }

  row_matrix<T> w_;          // (m, d)
  std::vector<double> wd_;   // (m, d) in double while drawing; empty afterwards
};

}  // namespace salt
