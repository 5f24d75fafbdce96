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
#include <limits>
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

/// What the kernels' association may add to the error of a correct computation in T, beyond twice the
/// naive formula's (the floor of shared/DESIGN.md §5's criterion, for linear attention): 2 gamma_{n+m}
/// cond max(|v|, |out|), gamma_k = k u / (1 - k u), u = epsilon / 2, for rows that see at most `keys` = n
/// keys through `features` = m features, `condition` = max cond of those rows (linear_formula) and
/// `magnitude` = max(|v| over the keys they see, |out|).
///
/// Why "twice the naive formula" does not bound the kernels on its own: the formula forms a_j = p . k_j
/// (p = phi(q), k_j = phi(k_j), m products) and then sums a_j and a_j v_j over keys; the kernels sum the
/// keys' features first, z = sum_j k_j and S = sum_j k_j v_j^T, each entry one in-order chain over the
/// keys (state updates, chunk after chunk), and then read p . z and p S. Different association, different
/// roundings: the naive error is no measure of the kernels'. Where a key's features are huge (1e8 beside
/// features of order 1), every later addition to z rounds at the huge magnitude, and the keys whose relu
/// feature is exactly epsilon add the very same value each time, so they commit the same rounding error
/// each time: it grows like n u, not sqrt(n) u (fuzz_linear's found-relu-huge-key-repeated-rounding: 45
/// additions of fl(6.9) at 2^26..2^27, each 0.4 ulp high, put z 33 u high, the output 40 u low, where
/// the formula, summing a_j that differ from key to key over Eigen's several partial sums, is 9 u off).
///
/// The bound, first order in u. In any of the kernels' forms (non-causal state, causal chunks reading the
/// state and then adding their own scores, a long head's scan of block states, the recurrent state) each
/// product p_l k_jl reaches den through at most n + m roundings: its own and the later additions of the
/// chain over the n keys (the state's, then the chunk's own scores added to the state's read; a scan
/// adds block states that hold keys, standing for additions of those keys), and the m-term sum over
/// features. p_l k_jl v_jc reaches num_c likewise (a fused multiply-add is one rounding). So
/// |d den| <= gamma_{n+m} sum_jl |p_l k_jl| = gamma_{n+m} cond |den|, |d num_c| <= gamma_{n+m} sum_jl
/// |p_l k_jl| |v_jc| <= gamma_{n+m} cond |den| max_j |v_jc|, and |d out_c| <= (|d num_c| + |out_c| |d den|)
/// / |den| <= gamma_{n+m} cond (max_j |v_jc| + |out_c|) <= this floor. The division's rounding and the
/// features' own errors are the criterion's other floor. It is the worst-case bound (316 u for the row
/// above, 8x its error), not a probabilistic sqrt(n + m) one: that assumes independent roundings, and the
/// repeated ones above are not. A wrong kernel is far outside it: a key missed or seen too early moves an
/// output by about |v| a_j / den (|v| / n for keys of equal weight), a sum carried in float by 1e-8 |v|.
template <class T>
double linear_association_floor(index keys, index features, double condition, double magnitude) {
  const double u = static_cast<double>(std::numeric_limits<T>::epsilon()) / 2;
  const double k = static_cast<double>(keys + features);
  return 2 * (k * u / (1 - k * u)) * condition * magnitude;
}

}  // namespace salt::test
