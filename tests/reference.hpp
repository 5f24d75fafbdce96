#pragma once
/// \file reference.hpp
/// The oracle: attention computed naively, materialising the whole (Lq, Lk) score matrix, in any
/// precision U, reusing the very mask and score objects the kernel under test gets. In a precision wider
/// than the kernel's (`oracle_t`) it is the reference; in the kernel's own precision it measures how
/// accurate a naive implementation can be, which the accuracy criterion (shared/DESIGN.md §5) compares
/// against. For float kernels the oracle is fp64; for double kernels it is long double (x87, 64-bit
/// mantissa), since a double kernel judged against a double reference would be held to zero error.

#include <salt/salt.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

namespace salt::test {

/// The longest sequence the reference sweeps use. Sanitizer builds set SALT_TEST_MAX_LENGTH (to 300):
/// every case still runs, over several query tiles and every kind of tail, but the sweeps' largest shapes
/// (whose O(L^2) long double references dominate the time) are left to the optimised build.
#ifdef SALT_TEST_MAX_LENGTH
inline constexpr index sweep_max_length = SALT_TEST_MAX_LENGTH;
#else
inline constexpr index sweep_max_length = index{1} << 40;
#endif

/// Whether a shape of the sweeps runs in this build (see sweep_max_length).
inline bool in_sweep(index lq, index lk) { return lq <= sweep_max_length && lk <= sweep_max_length; }

/// The precision the reference runs in for a kernel of precision T.
template <class T>
using oracle_t = std::conditional_t<std::is_same_v<T, float>, double, long double>;

template <class U>
struct reference_result {
  row_matrix<U> out;  // (Lq, dv)
  column<U> lse;      // (Lq)
};

/// Naive attention of one head in precision U. Inputs are converted to U first.
template <class U, class T, class Mask = no_mask, class Score = dot_product>
reference_result<U> naive_attention(const row_matrix<T>& q, const row_matrix<T>& k, const row_matrix<T>& v,
                                    const Mask& mask = {}, const Score& score = {}, problem_shape where = {}) {
  const index lq = q.rows(), lk = k.rows(), d = q.cols();
  where.lq = lq;
  where.lk = lk;
  const row_matrix<U> qu = q.template cast<U>(), ku = k.template cast<U>(), vu = v.template cast<U>();
  // Scores stored key-major, as the engine hands them to score policies: st(j, i) is query i, key j.
  row_matrix<U> st = row_matrix<U>::Zero(lk, lq);
  if constexpr (Score::uses_dot_product()) st = ku * (qu * static_cast<U>(score.dot_scale(d))).transpose();
  score.apply(logit_tile<U>{st.data(), lq, 0, 0, lq, lk}, where);
  reference_result<U> r{row_matrix<U>::Zero(lq, v.cols()), column<U>(lq)};
  std::vector<U> p(static_cast<std::size_t>(lk));
  // An attention sink (score/sinks.hpp) is one more logit in every row's softmax, with a value row of zeros.
  U sink = -std::numeric_limits<U>::infinity();
  if constexpr (has_sinks<Score>) sink = static_cast<U>(score.sink_logit(where.head));
  for (index i = 0; i < lq; ++i) {
    U m = sink;
    bool any_nan = false;
    for (index j = 0; j < lk; ++j) {
      if (!mask.allows(i, j, where)) continue;
      any_nan |= std::isnan(st(j, i));
      m = std::max(m, st(j, i));
    }
    if (m == -std::numeric_limits<U>::infinity() && !any_nan) {  // sees no key (nor a sink): zeros, LSE = -inf
      r.lse(i) = -std::numeric_limits<U>::infinity();
      continue;
    }
    if (any_nan) m = std::numeric_limits<U>::quiet_NaN();
    U sum = std::exp(sink - m);
    for (index j = 0; j < lk; ++j) {
      p[static_cast<std::size_t>(j)] = mask.allows(i, j, where) ? std::exp(st(j, i) - m) : U(0);
      sum += p[static_cast<std::size_t>(j)];
    }
    for (index j = 0; j < lk; ++j) {
      if (!mask.allows(i, j, where)) continue;
      r.out.row(i) += (p[static_cast<std::size_t>(j)] / sum) * vu.row(j);
    }
    r.lse(i) = m + std::log(sum);
  }
  return r;
}

template <class U>
struct reference_gradients {
  row_matrix<U> dq, dk, dv;  // (Lq, d), (Lk, d), (Lk, dv)
  /// The largest sum of the magnitudes of the terms of an entry of each gradient (P (|dP| + |D|) |slope| |k| for
  /// dq, and so on): the scale of the rounding errors any order of summation makes. Where the terms cancel (one
  /// key: dS = P (dP - D) = 0 exactly, while dP and D are computed apart), a gradient is 0 but its error is not.
  double dq_terms = 0, dk_terms = 0, dv_terms = 0;
  /// d loss / d logit of every pair, dS = P (dP - D) slope (Lq, Lk; 0 where the mask hides the pair), and the
  /// largest P |slope| (|dP| + |D|), the scale of its rounding errors.
  row_matrix<U> ds{};
  double ds_terms = 0;
};

/// Applies `score` to the key-major logits st (lk, lq) as the engine does, and returns d logit / d (scaled q.k) of
/// every pair, by the textbook derivatives: 1 for additive terms, 1 - tanh^2(x / cap) of soft-capping's input x,
/// and the product of the terms' slopes for a sum (the chain rule in the order they apply).
template <class U, class Score>
row_matrix<U> apply_with_reference_slope(const Score& score, row_matrix<U>& st, const problem_shape& where) {
  if constexpr (requires { score.cap; score.inner; }) {
    row_matrix<U> slope = apply_with_reference_slope<U>(score.inner, st, where);
    const U cap = static_cast<U>(score.cap);
    for (index j = 0; j < st.rows(); ++j)
      for (index i = 0; i < st.cols(); ++i) {
        const U t = std::tanh(st(j, i) / cap);
        st(j, i) = cap * t;
        slope(j, i) *= U(1) - t * t;
      }
    return slope;
  } else if constexpr (requires { score.a; score.b; }) {
    const row_matrix<U> sa = apply_with_reference_slope<U>(score.a, st, where);
    const row_matrix<U> sb = apply_with_reference_slope<U>(score.b, st, where);
    return sa.cwiseProduct(sb);
  } else {
    static_assert(Score::is_additive(), "the reference knows the derivatives of additive scores and softcap");
    score.apply(logit_tile<U>{st.data(), st.cols(), 0, 0, st.cols(), st.rows()}, where);
    return row_matrix<U>::Ones(st.rows(), st.cols());
  }
}

/// The textbook backward of one head in precision U, materialising every (Lq, Lk) matrix: P the row softmax over
/// the allowed keys (a sink joins the denominator), dP = dO V^T, dS = P o (dP - rowsum(P o dP)) o slope,
/// dQ = scale dS K, dK = scale dS^T Q, dV = P^T dO. Rows that see nothing contribute nothing.
template <class U, class T, class Mask = no_mask, class Score = dot_product>
reference_gradients<U> naive_attention_backward(const row_matrix<T>& q, const row_matrix<T>& k, const row_matrix<T>& v,
                                                const row_matrix<T>& dout, const Mask& mask = {},
                                                const Score& score = {}, problem_shape where = {}) {
  const index lq = q.rows(), lk = k.rows(), d = q.cols();
  where.lq = lq;
  where.lk = lk;
  const row_matrix<U> qu = q.template cast<U>(), ku = k.template cast<U>(), vu = v.template cast<U>(),
                      du = dout.template cast<U>();
  const U scale = Score::uses_dot_product() ? static_cast<U>(score.dot_scale(d)) : U(0);
  row_matrix<U> st = row_matrix<U>::Zero(lk, lq);
  if constexpr (Score::uses_dot_product()) st = ku * (qu * scale).transpose();
  const row_matrix<U> slope = apply_with_reference_slope<U>(score, st, where);
  U sink = -std::numeric_limits<U>::infinity();
  if constexpr (has_sinks<Score>) sink = static_cast<U>(score.sink_logit(where.head));
  reference_gradients<U> g{row_matrix<U>::Zero(lq, d), row_matrix<U>::Zero(lk, d), row_matrix<U>::Zero(lk, v.cols())};
  g.ds = row_matrix<U>::Zero(lq, lk);
  column<U> dk_terms = column<U>::Zero(lk), dv_terms = column<U>::Zero(lk);
  const auto largest = [](const auto& row) { return row.size() ? static_cast<U>(row.cwiseAbs().maxCoeff()) : U(0); };
  std::vector<U> p(static_cast<std::size_t>(lk)), dp(static_cast<std::size_t>(lk));
  // A kernel's slope (1 - tanh^2 for soft-capping) carries the absolute error of its tanh, a few units in the last
  // place of 1, however small the slope is where the cap saturates (Eigen's float tanh returns exactly +-1 past
  // |x| = 9, where the slope is 1e-7, not 0): the terms count the slope as |slope| + 2 for scores that have one.
  const U slope_error = detail::is_additive_score<Score>() ? U(0) : U(2);
  for (index i = 0; i < lq; ++i) {
    U m = sink;
    bool any = false, any_nan = false;
    for (index j = 0; j < lk; ++j) {
      if (!mask.allows(i, j, where)) continue;
      any = true;
      any_nan |= std::isnan(st(j, i));
      m = std::max(m, st(j, i));
    }
    if (!any || (m == -std::numeric_limits<U>::infinity() && !any_nan)) continue;
    if (any_nan) m = std::numeric_limits<U>::quiet_NaN();
    U sum = std::exp(sink - m);
    for (index j = 0; j < lk; ++j)
      if (mask.allows(i, j, where)) sum += std::exp(st(j, i) - m);
    U D = 0;
    for (index j = 0; j < lk; ++j) {
      if (!mask.allows(i, j, where)) continue;
      const auto s = static_cast<std::size_t>(j);
      p[s] = std::exp(st(j, i) - m) / sum;
      dp[s] = du.row(i).dot(vu.row(j));
      D += p[s] * dp[s];
    }
    U dq_terms = 0;
    for (index j = 0; j < lk; ++j) {
      if (!mask.allows(i, j, where)) continue;
      const auto s = static_cast<std::size_t>(j);
      const U ds = p[s] * (dp[s] - D) * slope(j, i);
      g.ds(i, j) = ds;
      const U ds_scale = std::abs(p[s]) * (std::abs(slope(j, i)) + slope_error) * (std::abs(dp[s]) + std::abs(D));
      if (std::isfinite(ds_scale)) g.ds_terms = std::max(g.ds_terms, static_cast<double>(ds_scale));
      g.dv.row(j) += p[s] * du.row(i);
      g.dq.row(i) += (scale * ds) * ku.row(j);
      g.dk.row(j) += (scale * ds) * qu.row(i);
      const U ds_terms = std::abs(p[s] * scale) * (std::abs(slope(j, i)) + slope_error) * (std::abs(dp[s]) + std::abs(D));
      dq_terms += ds_terms * largest(ku.row(j));
      dk_terms(j) += ds_terms * largest(qu.row(i));
      dv_terms(j) += std::abs(p[s]) * largest(du.row(i));
    }
    if (std::isfinite(dq_terms)) g.dq_terms = std::max(g.dq_terms, static_cast<double>(dq_terms));
  }
  for (index j = 0; j < lk; ++j) {
    if (std::isfinite(dk_terms(j))) g.dk_terms = std::max(g.dk_terms, static_cast<double>(dk_terms(j)));
    if (std::isfinite(dv_terms(j))) g.dv_terms = std::max(g.dv_terms, static_cast<double>(dv_terms(j)));
  }
  return g;
}

/// A fingerprint of every matrix the tests compare (the first argument of max_abs_diff: the kernel's output),
/// printed at exit when SALT_TEST_OUTPUT_HASH is set. Each matrix's FNV-1a hash of its shape and bits is
/// summed modulo 2^64, so the fingerprint does not depend on the order tests or threads run in. Two trees
/// whose kernels give the same bits on every test input print the same fingerprint.
struct output_fingerprint {
  std::atomic<std::uint64_t> sum{0}, matrices{0};
  ~output_fingerprint() {
    if (std::getenv("SALT_TEST_OUTPUT_HASH"))
      std::fprintf(stderr, "salt output fingerprint: %016llx over %llu matrices\n",
                   static_cast<unsigned long long>(sum.load()), static_cast<unsigned long long>(matrices.load()));
  }
  template <class A>
  void add(const A& a) {
    std::uint64_t h = 14695981039346656037ull;
    auto fold = [&h](const void* p, std::size_t n) {
      const auto* c = static_cast<const unsigned char*>(p);
      for (std::size_t i = 0; i < n; ++i) h = (h ^ c[i]) * 1099511628211ull;
    };
    const index rows = a.rows(), cols = a.cols();
    fold(&rows, sizeof rows);
    fold(&cols, sizeof cols);
    for (index i = 0; i < rows; ++i)
      for (index j = 0; j < cols; ++j) {
        const auto x = a(i, j);
        fold(&x, sizeof x);
      }
    sum += h;
    ++matrices;
  }
};
inline output_fingerprint& fingerprint() {
  static output_fingerprint f;
  return f;
}

/// Largest absolute difference over entries where both are finite; non-finite entries must agree in kind
/// (both NaN, or the same infinity), else the difference is +inf. Matrices of different shapes differ by
/// +inf (so an empty output never passes for a full one).
template <class A, class B>
double max_abs_diff(const A& a, const B& b) {
  fingerprint().add(a);
  if (a.rows() != b.rows() || a.cols() != b.cols()) return std::numeric_limits<double>::infinity();
  long double worst = 0;
  for (index i = 0; i < a.rows(); ++i)
    for (index j = 0; j < a.cols(); ++j) {
      const long double x = static_cast<long double>(a(i, j)), y = static_cast<long double>(b(i, j));
      if (std::isnan(x) || std::isnan(y)) {
        if (std::isnan(x) != std::isnan(y)) return std::numeric_limits<double>::infinity();
        continue;
      }
      if (std::isinf(x) || std::isinf(y)) {
        if (x != y) return std::numeric_limits<double>::infinity();
        continue;
      }
      worst = std::max(worst, std::abs(x - y));
    }
  return static_cast<double>(worst);
}

/// Largest finite magnitude in a matrix or vector (1 when there is none): the scale of its values.
template <class A>
double finite_scale(const A& a) {
  double s = 1;
  for (index i = 0; i < a.rows(); ++i)
    for (index j = 0; j < a.cols(); ++j)
      if (std::isfinite(static_cast<double>(a(i, j)))) s = std::max(s, std::abs(static_cast<double>(a(i, j))));
  return s;
}

/// The accuracy criterion of shared/DESIGN.md §5 (FlashAttention's): the kernel's error against the fp64
/// reference is at most twice the error of the naive computation in the kernel's own precision, plus a
/// floor of a few units in the last place of the output's scale (for outputs the naive path gets exact).
template <class T>
struct accuracy {
  double kernel_error = 0, naive_error = 0, floor = 0;
  bool ok() const { return kernel_error <= 2 * naive_error + floor; }
};

template <class T, class A, class B, class C>
accuracy<T> judge(const A& kernel, const B& naive, const C& ref, double scale) {
  return {max_abs_diff(kernel, ref), max_abs_diff(naive, ref),
          4 * static_cast<double>(std::numeric_limits<T>::epsilon()) * std::max(1.0, scale)};
}

/// Uniform [-1, 1) matrices from a fixed seed (std::mt19937_64 is specified bit for bit by the standard;
/// the distribution is not, so values are built from raw bits).
class random_source {
 public:
  explicit random_source(std::uint64_t seed) : engine_(seed) {}
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-52 - 1.0; }
  template <class T>
  row_matrix<T> matrix(index rows, index cols, double scale = 1.0) {
    row_matrix<T> m(rows, cols);
    for (index i = 0; i < rows; ++i)
      for (index j = 0; j < cols; ++j) m(i, j) = static_cast<T>(scale * uniform());
    return m;
  }
  std::uint64_t bits() { return engine_(); }

 private:
  std::mt19937_64 engine_;
};

}  // namespace salt::test
