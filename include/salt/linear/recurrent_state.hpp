#pragma once
/// \file linear/recurrent_state.hpp
/// Streaming (recurrent) linear attention for autoregressive decoding: the state S = sum phi(k) v^T (m, dv)
/// and z = sum phi(k) (m) of the tokens appended so far. append(k, v) adds a token, query(q) attends to
/// every token appended so far; each costs O(m (d + dv)) and memory stays constant, whatever the length.
///
///     salt::favor_plus<float> phi(salt::random_features<float>::orthogonal(64, 64, /*seed=*/7));
///     salt::recurrent_state<float, salt::favor_plus<float>> state(phi, /*d=*/64, /*dv=*/64);
///     for (...) { state.append(k_t, v_t); state.query(q_t, out_t); }   // out_t: a (1, dv) row
///
/// Appending tokens 0..t and querying with q_t gives what salt::linear_attention(q, k, v, phi,
/// salt::causal{}) gives for row t (up to rounding: the chunked form sums in another order). Stabilisation
/// is the same: a query's log scale cancels; keys are weighted against a running reference that is raised,
/// with S and z rescaled, only when a key's scale passes it by the margin (linear/attention.hpp), so a
/// later token never changes an earlier output. The denominator guard is the same too.
///
/// append and query allocate nothing; the state is not safe to use from two threads at once.

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "../config.hpp"
#include "../detail/workspace.hpp"
#include "../error.hpp"
#include "../tensor.hpp"
#include "attention.hpp"
#include "feature_map.hpp"
#include "state.hpp"

namespace salt {

/// The recurrent state of one head of linear attention under feature map `Map`. Owns S (m, dv), z (m) and a
/// scratch row of m features: O(m dv) memory, allocated once by the constructor, which throws salt::error
/// when d or dv < 1 or the map fails its check.
template <class T, class Map>
  requires feature_map<Map, T>
class recurrent_state {
 public:
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "salt::recurrent_state holds float or double.");
  /// A row vector, the form append() copies a strided k or v into.
  using row = Eigen::Matrix<T, 1, Eigen::Dynamic>;

  /// An empty state for keys and queries of width d and values of width dv; `map` is copied.
  recurrent_state(const Map& map, index d, index dv) : map_(map), d_(d), dv_(dv) {
    constexpr const char* api = "salt::recurrent_state";
    detail::require(d >= 1 && dv >= 1, api, ": d and dv must be >= 1, got d = ", d, ", dv = ", dv);
    detail::check_feature_map(map_, d, api);
    m_ = map_.features(d);
    s_ = detail::aligned_buffer<T>(m_ * dv_);
    z_ = detail::aligned_buffer<T>(m_);
    phi_ = detail::aligned_buffer<T>(m_);
  }

  index d() const noexcept { return d_; }          ///< width of keys and queries
  index dv() const noexcept { return dv_; }        ///< width of values and outputs
  index features() const noexcept { return m_; }   ///< m = map().features(d)
  index size() const noexcept { return tokens_; }  ///< tokens appended since construction or reset()
  const Map& map() const noexcept { return map_; }  ///< the state's own copy of the feature map

  /// Forgets every token.
  void reset() noexcept {
    std::fill_n(s_.data(), m_ * dv_, T(0));
    std::fill_n(z_.data(), m_, T(0));
    ref_ = detail::state_reference<T>{};
    tokens_ = 0;
  }

  /// Adds the token (k, v): k has d entries, v dv (row or column vectors, or any contiguous range).
  template <class DK, class DV>
  void append(const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v) {
    check_vector(k, d_, "k");
    check_vector(v, dv_, "v");
    if constexpr (has_contiguous_data<DK> && has_contiguous_data<DV>) {
      append(k.derived().data(), v.derived().data());
    } else {
      const row kr = k.reshaped().transpose(), vr = v.reshaped().transpose();  // strided vectors: copied
      append(kr.data(), vr.data());
    }
  }

  /// Adds a token from raw pointers: k[0..d), v[0..dv).
  void append(const T* k, const T* v) noexcept {
    T scale = 0;
    map_.map(feature_input<T>(k, 1, d_, Eigen::OuterStride<>(d_)), feature_output<T>(phi_.data(), 1, m_, Eigen::OuterStride<>(m_)),
             Map::log_scaled() ? &scale : nullptr);
    if constexpr (Map::log_scaled()) {
      if (ref_.passed_by(scale)) ref_.raise(scale, s_.data(), m_, dv_, dv_, z_.data());
      const T w = ref_.weight(scale);
      if (w == T(0)) {
        ++tokens_;
        return;
      }
      for (index l = 0; l < m_; ++l) phi_[l] *= w;
    }
    using mat = Eigen::Map<row_matrix<T>>;
    const Eigen::Map<const row> phi(phi_.data(), m_), vr(v, dv_);
    mat(s_.data(), m_, dv_).noalias() += phi.transpose() * vr;
    Eigen::Map<row>(z_.data(), m_) += phi;
    ++tokens_;
  }

  /// Attends q (d entries) to every token appended so far, into out (dv entries). Uses the state's scratch.
  template <class DQ, class DO>
  void query(const Eigen::MatrixBase<DQ>& q, Eigen::MatrixBase<DO> const& out) {
    check_vector(q, d_, "q");
    check_vector(out, dv_, "out");
    static_assert(has_contiguous_data<DQ> && has_contiguous_data<DO>,
                  "salt::recurrent_state::query takes contiguous vectors (a row or column of a matrix, "
                  "or a Map); copy a strided one first.");
    query(q.derived().data(), const_cast<DO&>(out.derived()).data());
  }

  /// Attends q[0..d) to every token appended so far, into out[0..dv).
  void query(const T* q, T* out) noexcept {
    map_.map(feature_input<T>(q, 1, d_, Eigen::OuterStride<>(d_)), feature_output<T>(phi_.data(), 1, m_, Eigen::OuterStride<>(m_)),
             Map::log_scaled() ? &scratch_scale_ : nullptr);
    const Eigen::Map<const row> phi(phi_.data(), m_);
    Eigen::Map<row> o(out, dv_);
    o.noalias() = phi * Eigen::Map<const row_matrix<T>>(s_.data(), m_, dv_);
    const T den = phi.dot(Eigen::Map<const row>(z_.data(), m_));
    detail::write_row(out, den, dv_, out);
  }

 private:
  template <class D>
  static constexpr bool has_contiguous_data =
      requires(const D& x) { x.data(); } && (D::IsVectorAtCompileTime != 0) && (D::InnerStrideAtCompileTime == 1);

  template <class D>
  void check_vector(const Eigen::MatrixBase<D>& x, index n, const char* name) const {
    detail::require(x.size() == n && (x.rows() == 1 || x.cols() == 1), "salt::recurrent_state: ", name, " is ",
                    x.rows(), " x ", x.cols(), " but must be a vector of ", n);
  }

  Map map_;
  index d_ = 0, dv_ = 0, m_ = 0, tokens_ = 0;
  detail::aligned_buffer<T> s_, z_, phi_;  // S (m, dv), z (m), phi of the current token (m)
  detail::state_reference<T> ref_;  // log-offset of S and z (linear/state.hpp)
  T scratch_scale_ = 0;
};

}  // namespace salt
