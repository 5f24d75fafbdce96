#pragma once
/// \file linear_reference.hpp
/// The linear-attention oracle of the tests and the fuzzer, with no test-framework dependency: the feature
/// maps salt ships, written out from their definitions in any precision U (no stabiliser): phi(x) rows for
/// inputs x (rows, d) and, for the projected maps, W (m, d); x' = x d^(-1/4); and the formula of linear
/// attention over given features.

#include <salt/linear.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

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

/// The formula: row i = sum_{j < n_i} (pq_i . pk_j) v_j / sum_{j < n_i} pq_i . pk_j, n_i = len, or
/// clamp(i + shift + 1, 0, len) when causal; a row that sees no key, or whose denominator is 0, is zero.
/// pq (Lq, m), pk (Lk, m), v (Lk, dv) -> (Lq, dv), in precision U.
/// `den_out`, when given, receives each row's denominator (0 for a row that sees no key), and `cond` the
/// condition of its ratio, sum_j sum_l |pq_il pk_jl| / |den| (1 for positive features; large where trig
/// features cancel, across keys or across the features of one product).
template <class U, class T>
linear_mat<U> linear_formula(const linear_mat<U>& pq, const linear_mat<U>& pk, const linear_mat<T>& v, bool causal,
                             index shift, index len, std::vector<U>* den_out = nullptr,
                             std::vector<U>* cond = nullptr) {
  const linear_mat<U> vu = v.template cast<U>();
  linear_mat<U> out = linear_mat<U>::Zero(pq.rows(), v.cols());
  if (den_out) den_out->assign(static_cast<std::size_t>(pq.rows()), U(0));
  if (cond) cond->assign(static_cast<std::size_t>(pq.rows()), U(1));
  for (index i = 0; i < pq.rows(); ++i) {
    const index n = causal ? std::clamp<index>(i + shift + 1, 0, len) : len;
    if (n == 0) continue;
    const Eigen::Matrix<U, 1, Eigen::Dynamic> a = pq.row(i) * pk.topRows(n).transpose();
    const U den = a.sum();
    if (den_out) (*den_out)[static_cast<std::size_t>(i)] = den;
    if (cond && den != 0)
      (*cond)[static_cast<std::size_t>(i)] =
          (pq.row(i).cwiseAbs() * pk.topRows(n).cwiseAbs().transpose()).sum() / std::abs(den);
    if (den != 0) out.row(i) = a * vu.topRows(n) / den;
  }
  return out;
}

}  // namespace salt::test
