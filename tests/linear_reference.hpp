#pragma once
/// \file linear_reference.hpp
/// The feature maps salt ships, written out from their definitions in any precision U (no stabiliser):
/// phi(x) rows for inputs x (rows, d) and, for the projected maps, W (m, d); x' = x d^(-1/4). The oracle's
/// features in the linear-attention tests.

#include <salt/linear.hpp>

#include <cmath>

namespace salt::test {

template <class U>
using linear_mat = row_matrix<U>;

/// x' = x d^(-1/4) in precision U.
template <class U, class T>
linear_mat<U> scaled(const linear_mat<T>& x) {
  return x.template cast<U>() * std::pow(static_cast<U>(x.cols()), U(-0.25));
}
/// phi(x) of each shipped map, in precision U.
template <class U, class T>
linear_mat<U> features_def(const salt::favor_plus<T>& map, const linear_mat<T>& x, const linear_mat<T>& w) {
  const linear_mat<U> xs = scaled<U>(x), p = xs * w.template cast<U>().transpose();
  linear_mat<U> out(x.rows(), map.features(x.cols()));
  for (index r = 0; r < x.rows(); ++r)
    out.row(r) = (p.row(r).array() - xs.row(r).squaredNorm() / 2).exp() / std::sqrt(static_cast<U>(w.rows()));
  return out;
}
template <class U, class T>
linear_mat<U> features_def(const salt::favor_trig<T>&, const linear_mat<T>& x, const linear_mat<T>& w) {
  const linear_mat<U> xs = scaled<U>(x), p = xs * w.template cast<U>().transpose();
  const index m = w.rows();
  linear_mat<U> out(x.rows(), 2 * m);
  for (index r = 0; r < x.rows(); ++r) {
    const U e = std::exp(xs.row(r).squaredNorm() / 2) / std::sqrt(static_cast<U>(m));
    out.row(r).head(m) = p.row(r).array().cos() * e;
    out.row(r).tail(m) = p.row(r).array().sin() * e;
  }
  return out;
}
template <class U, class T>
linear_mat<U> features_def(const salt::relu_features<T>& map, const linear_mat<T>& x, const linear_mat<T>& w) {
  const linear_mat<U> xs = scaled<U>(x);
  const linear_mat<U> p = w.size() ? linear_mat<U>(xs * w.template cast<U>().transpose()) : xs;
  return (p.array().max(U(0)) + static_cast<U>(map.epsilon())).matrix();
}
template <class U, class T>
linear_mat<U> features_def(const salt::elu_plus_one&, const linear_mat<T>& x, const linear_mat<T>&) {
  const linear_mat<U> xu = x.template cast<U>();
  return (xu.array() > 0).select(xu.array() + 1, xu.array().exp()).matrix();
}

}  // namespace salt::test
