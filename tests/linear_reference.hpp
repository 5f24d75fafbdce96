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


/// The features' backward by their definitions, dx = J_phi(x)^T g for the gradient g (rows, m) by phi(x),
/// in precision U. With `magnitude`, the same sums over the terms' absolute values (differences become sums):
/// the scale of the rounding errors any order of summation makes.
template <class U, class T>
linear_mat<U> features_back_def(const salt::favor_plus<T>& map, const linear_mat<T>& x, const linear_mat<T>& w,
                                const linear_mat<U>& g, bool magnitude) {
  const U s4 = std::pow(static_cast<U>(x.cols()), U(-0.25)), s2 = s4 * s4;
  const linear_mat<U> xu = x.template cast<U>(), wu = w.template cast<U>();
  const linear_mat<U> phi = features_def<U>(map, x, w);
  linear_mat<U> dx(x.rows(), x.cols());
  for (index r = 0; r < x.rows(); ++r) {
    const Eigen::Matrix<U, 1, Eigen::Dynamic> gp = g.row(r).cwiseProduct(phi.row(r));  // g_l phi_l
    if (magnitude) dx.row(r) = gp.cwiseAbs() * wu.cwiseAbs() * s4 + xu.row(r).cwiseAbs() * (gp.cwiseAbs().sum() * s2);
    else dx.row(r) = gp * wu * s4 - xu.row(r) * (gp.sum() * s2);
  }
  return dx;
}
template <class U, class T>
linear_mat<U> features_back_def(const salt::favor_trig<T>& map, const linear_mat<T>& x, const linear_mat<T>& w,
                                const linear_mat<U>& g, bool magnitude) {
  const U s4 = std::pow(static_cast<U>(x.cols()), U(-0.25)), s2 = s4 * s4;
  const index m = w.rows();
  const linear_mat<U> xu = x.template cast<U>(), wu = w.template cast<U>();
  const linear_mat<U> phi = features_def<U>(map, x, w);
  linear_mat<U> dx(x.rows(), x.cols());
  for (index r = 0; r < x.rows(); ++r) {
    // d phi_cos,l = phi_cos,l x d^(-1/2) - phi_sin,l W_l d^(-1/4); d phi_sin,l = phi_sin,l x d^(-1/2) + phi_cos,l W_l d^(-1/4)
    const auto gc = g.row(r).head(m), gs = g.row(r).tail(m);
    const auto pc = phi.row(r).head(m), ps = phi.row(r).tail(m);
    if (magnitude)
      dx.row(r) = xu.row(r).cwiseAbs() * (g.row(r).cwiseAbs().cwiseProduct(phi.row(r).cwiseAbs()).sum() * s2) +
                  (gs.cwiseAbs().cwiseProduct(pc.cwiseAbs()) + gc.cwiseAbs().cwiseProduct(ps.cwiseAbs())) *
                      wu.cwiseAbs() * s4;
    else
      dx.row(r) = xu.row(r) * (g.row(r).cwiseProduct(phi.row(r)).sum() * s2) +
                  (gs.cwiseProduct(pc) - gc.cwiseProduct(ps)) * wu * s4;
  }
  return dx;
}
template <class U, class T>
linear_mat<U> features_back_def(const salt::relu_features<T>&, const linear_mat<T>& x, const linear_mat<T>& w,
                                const linear_mat<U>& g, bool magnitude) {
  const linear_mat<U> xs = scaled<U>(x);
  const linear_mat<U> p = w.size() ? linear_mat<U>(xs * w.template cast<U>().transpose()) : xs;
  const linear_mat<U> gm = (p.array() > 0).select(magnitude ? linear_mat<U>(g.cwiseAbs()) : g, U(0));
  const U s4 = std::pow(static_cast<U>(x.cols()), U(-0.25));
  if (!w.size()) return gm * s4;
  return gm * (magnitude ? linear_mat<U>(w.template cast<U>().cwiseAbs()) : linear_mat<U>(w.template cast<U>())) * s4;
}
template <class U, class T>
linear_mat<U> features_back_def(const salt::elu_plus_one&, const linear_mat<T>& x, const linear_mat<T>&,
                                const linear_mat<U>& g, bool magnitude) {
  const linear_mat<U> xu = x.template cast<U>();
  const linear_mat<U> slope = (xu.array() > 0).select(linear_mat<U>::Ones(x.rows(), x.cols()), xu.array().exp().matrix());
  return (magnitude ? linear_mat<U>(g.cwiseAbs()) : g).cwiseProduct(slope);
}

/// Gradients of linear attention by the textbook formula in precision U, and the largest sum of the magnitudes
/// of the terms of an entry of each gradient (the scale of the rounding errors any order of summation makes;
/// each row's terms weighted by the condition of its ratio, so that cancelling trig features count).
template <class U>
struct linear_gradients_def {
  linear_mat<U> dq, dk, dv;
  double dq_terms = 0, dk_terms = 0, dv_terms = 0;
};

/// Row i sees keys j < n_i as in linear_formula; rows whose denominator is 0 have zero gradients. Per row,
/// with a_ij = phi(q_i) . phi(k_j) and den_i = sum_j a_ij: d a_ij = dout_i . (v_j - out_i) / den_i, then
/// d phi(q_i) = sum_j d a_ij phi(k_j), d phi(k_j) += d a_ij phi(q_i), dv_j += a_ij dout_i / den_i, and the
/// features' backward by definition.
template <class U, class Map, class T>
linear_gradients_def<U> linear_backward_def(const Map& map, const linear_mat<T>& q, const linear_mat<T>& k,
                                            const linear_mat<T>& v, const linear_mat<T>& dout, const linear_mat<T>& w,
                                            bool causal, index shift, index len) {
  const linear_mat<U> pq = features_def<U>(map, q, w), pk = features_def<U>(map, k, w);
  const linear_mat<U> vu = v.template cast<U>(), du = dout.template cast<U>();
  const index lq = q.rows(), lk = k.rows(), m = pq.cols(), dv = v.cols();
  linear_mat<U> gq = linear_mat<U>::Zero(lq, m), gk = linear_mat<U>::Zero(lk, m), dvv = linear_mat<U>::Zero(lk, dv);
  linear_mat<U> gq_m = gq, gk_m = gk, dv_m = dvv;  // magnitudes
  for (index i = 0; i < lq; ++i) {
    const index n = causal ? std::clamp<index>(i + shift + 1, 0, len) : len;
    if (n == 0) continue;
    const Eigen::Matrix<U, 1, Eigen::Dynamic> a = pq.row(i) * pk.topRows(n).transpose();
    const U den = a.sum();
    if (den == 0) continue;
    const U cond = (pq.row(i).cwiseAbs() * pk.topRows(n).cwiseAbs().transpose()).sum() / std::abs(den);
    const Eigen::Matrix<U, 1, Eigen::Dynamic> out = a * vu.topRows(n) / den;
    const Eigen::Matrix<U, 1, Eigen::Dynamic> out_m = a.cwiseAbs() * vu.topRows(n).cwiseAbs() / std::abs(den);
    for (index j = 0; j < n; ++j) {
      const U da = du.row(i).dot(vu.row(j) - out) / den;
      const U da_m = cond * du.row(i).cwiseAbs().dot(vu.row(j).cwiseAbs() + out_m.cwiseAbs()) / std::abs(den);
      gq.row(i) += da * pk.row(j);
      gk.row(j) += da * pq.row(i);
      dvv.row(j) += (a(j) / den) * du.row(i);
      gq_m.row(i) += da_m * pk.row(j).cwiseAbs();
      gk_m.row(j) += da_m * pq.row(i).cwiseAbs();
      dv_m.row(j) += (cond * std::abs(a(j)) / std::abs(den)) * du.row(i).cwiseAbs();
    }
  }
  linear_gradients_def<U> g{features_back_def<U>(map, q, w, gq, false), features_back_def<U>(map, k, w, gk, false), dvv};
  auto largest = [](const linear_mat<U>& x) {
    double s = 0;
    for (index r = 0; r < x.rows(); ++r)
      for (index c = 0; c < x.cols(); ++c)
        if (std::isfinite(static_cast<double>(x(r, c)))) s = std::max(s, static_cast<double>(x(r, c)));
    return s;
  };
  g.dq_terms = largest(features_back_def<U>(map, q, w, gq_m, true));
  g.dk_terms = largest(features_back_def<U>(map, k, w, gk_m, true));
  g.dv_terms = largest(dv_m);
  return g;
}

/// The floor the kernels' association may add to a gradient's error beyond twice the naive formula's: as
/// linear_association_floor, gamma_K times the terms' magnitudes, where a gradient's terms reach it through at
/// most K = 2 (keys + rows + features + d) roundings (the state's and G's chains over keys and rows, the
/// feature sums, the map's projection back).
template <class T>
double linear_gradient_floor(index keys, index rows, index features, index d, double terms) {
  const double u = static_cast<double>(std::numeric_limits<T>::epsilon()) / 2;
  const double k = 2.0 * static_cast<double>(keys + rows + features + d);
  return 2 * (k * u / (1 - k * u)) * terms;
}

}  // namespace salt::test
