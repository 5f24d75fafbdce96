// Linear attention's random features and feature maps: orthogonality and norms of the drawn W, the
// committed seed behaviour (same seed same bits, other seeds differ), every map's scaled output
// exp(log_scale) f against its definition written out in fp64, the feature_map concept, and inputs of
// magnitude 30 that would overflow an unstabilised map.
#include <salt/linear.hpp>

#include <cmath>
#include <cstdint>
#include <limits>

#include "catch.hpp"
#include "checks.hpp"
#include "linear_reference.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;
template <class U>
using mat = salt::row_matrix<U>;

/// A map's phi(x) in precision U, from its features and log scales computed by map().
template <class U, class T, class Map>
mat<U> phi_of(const Map& map, const mat<T>& x) {
  const idx m = map.features(x.cols());
  mat<T> f(x.rows(), m);
  std::vector<T> scale(static_cast<std::size_t>(x.rows()), T(0));
  map.map(salt::feature_input<T>(x.data(), x.rows(), x.cols(), Eigen::OuterStride<>(x.cols())),
          salt::feature_output<T>(f.data(), x.rows(), m, Eigen::OuterStride<>(m)), Map::log_scaled() ? scale.data() : nullptr);
  mat<U> out = f.template cast<U>();
  for (idx r = 0; r < x.rows(); ++r) out.row(r) *= std::exp(static_cast<U>(scale[static_cast<std::size_t>(r)]));
  return out;
}

/// Max relative error of a against b, entry by entry, against b's row scale.
template <class A, class B>
double row_relative_error(const A& a, const B& b) {
  double worst = 0;
  for (idx r = 0; r < b.rows(); ++r) {
    const double scale = static_cast<double>(b.row(r).cwiseAbs().maxCoeff());
    worst = std::max(worst, static_cast<double>((a.row(r) - b.row(r)).cwiseAbs().maxCoeff()) / scale);
  }
  return worst;
}

struct not_a_map {
  salt::index features(salt::index d) const { return d; }
};

}  // namespace

static_assert(salt::feature_map<salt::favor_plus<float>, float>);
static_assert(salt::feature_map<salt::favor_trig<double>, double>);
static_assert(salt::feature_map<salt::relu_features<float>, float>);
static_assert(salt::feature_map<salt::elu_plus_one, float> && salt::feature_map<salt::elu_plus_one, double>);
static_assert(!salt::feature_map<not_a_map, float>, "a type without map() and log_scaled() is not a feature map");
static_assert(!salt::feature_map<salt::favor_plus<float>, double>, "favor_plus<float> maps float rows only");

TEST_CASE("orthogonal random features: orthogonal blocks, stated norms", "[linear][random]") {
  for (const idx d : {idx{1}, idx{5}, idx{16}, idx{64}}) {
    for (const idx m : {idx{1}, d, 2 * d + 3}) {
      CAPTURE(d, m);
      const auto sq = salt::random_features<double>::orthogonal(m, d, 11, salt::feature_norms::sqrt_d);
      const auto chi = salt::random_features<double>::orthogonal(m, d, 11, salt::feature_norms::chi);
      REQUIRE(sq.m() == m);
      REQUIRE(sq.d() == d);
      for (idx b0 = 0; b0 < m; b0 += d) {
        const idx n = std::min(d, m - b0);
        const mat<double> blk = sq.matrix().middleRows(b0, n);
        // Rows of a block are orthogonal, each of norm sqrt(d): W W^T = d I to rounding.
        const mat<double> g = blk * blk.transpose() / static_cast<double>(d);
        CHECK((g - mat<double>::Identity(n, n)).cwiseAbs().maxCoeff() < 64 * std::numeric_limits<double>::epsilon());
        // The same directions with chi norms: rows are still orthogonal.
        const mat<double> c = chi.matrix().middleRows(b0, n);
        mat<double> gc = c * c.transpose();
        for (idx i = 0; i < n; ++i) {
          const double ni = c.row(i).norm();
          CHECK((c.row(i) / ni - blk.row(i) / std::sqrt(static_cast<double>(d))).cwiseAbs().maxCoeff() < 1e-14);
          for (idx j = 0; j < n; ++j) gc(i, j) /= ni * c.row(j).norm();
        }
        CHECK((gc - mat<double>::Identity(n, n)).cwiseAbs().maxCoeff() < 64 * std::numeric_limits<double>::epsilon());
      }
    }
  }
  // Chi norms: squared norms average d (here 256 rows of d = 16: standard error 0.35).
  const auto chi = salt::random_features<double>::orthogonal(256, 16, 3);
  CHECK(std::abs(chi.matrix().rowwise().squaredNorm().mean() - 16.0) < 1.5);
  CHECK(chi.matrix().rowwise().norm().maxCoeff() - chi.matrix().rowwise().norm().minCoeff() > 1.0);
}

TEST_CASE("random features: same seed same bits, other seeds differ, float is double rounded", "[linear][random]") {
  using RF = salt::random_features<double>;
  const auto a = RF::orthogonal(70, 16, 5), b = RF::orthogonal(70, 16, 5), c = RF::orthogonal(70, 16, 6);
  CHECK(a.matrix() == b.matrix());
  CHECK((a.matrix() - c.matrix()).cwiseAbs().minCoeff() > 0);
  const auto g = RF::gaussian(70, 16, 5), g2 = RF::gaussian(70, 16, 5), h = RF::gaussian(70, 16, 6);
  CHECK(g.matrix() == g2.matrix());
  CHECK((g.matrix() - h.matrix()).cwiseAbs().minCoeff() > 0);
  CHECK(salt::random_features<float>::orthogonal(70, 16, 5).matrix() == a.matrix().cast<float>());
  CHECK(salt::random_features<float>::gaussian(70, 16, 5).matrix() == g.matrix().cast<float>());
  // The first i.i.d. entries are the generator's first normal() draws.
  salt::random_generator rng(5);
  CHECK(g.matrix()(0, 0) == rng.normal());
  CHECK(g.matrix()(0, 1) == rng.normal());
  const mat<double> given = mat<double>::Random(3, 4);
  CHECK(RF::from_matrix(given).matrix() == given);
  CHECK(error_of([] { (void)RF::orthogonal(0, 4, 1); }) == "salt::random_features::orthogonal: m and d must be >= 1, got m = 0, d = 4");
  CHECK(error_of([] { (void)RF::gaussian(4, 0, 1); }) == "salt::random_features::gaussian: m and d must be >= 1, got m = 4, d = 0");
}

TEMPLATE_TEST_CASE("feature maps match their definitions", "[linear][maps]", float, double) {
  using T = TestType;
  using U = oracle_t<T>;
  const double tol = 64 * static_cast<double>(std::numeric_limits<T>::epsilon());
  random_source rng(21);
  for (const idx d : {idx{3}, idx{16}, idx{64}}) {
    CAPTURE(d, sizeof(T));
    const mat<T> x = rng.matrix<T>(13, d, 1.5);
    const auto w = salt::random_features<T>::orthogonal(2 * d + 1, d, 4);
    CHECK(row_relative_error(phi_of<U, T>(salt::favor_plus<T>(w), x), features_def<U>(salt::favor_plus<T>(w), x, w.matrix())) < tol);
    // Trig features: absolute error against exp(|x'|^2/2)/sqrt(m), as cos and sin cross zero.
    const mat<U> tr = features_def<U>(salt::favor_trig<T>(w), x, w.matrix()), tk = phi_of<U, T>(salt::favor_trig<T>(w), x);
    for (idx r = 0; r < x.rows(); ++r)
      CHECK(static_cast<double>((tk.row(r) - tr.row(r)).cwiseAbs().maxCoeff()) <
            tol * static_cast<double>(tr.row(r).cwiseAbs().maxCoeff()) * (1 + d));
    const salt::relu_features<T> relu_p(w, T(0.01)), relu_i;
    CHECK(row_relative_error(phi_of<U, T>(relu_p, x), features_def<U>(relu_p, x, w.matrix())) < tol * d);
    CHECK(row_relative_error(phi_of<U, T>(relu_i, x), features_def<U>(relu_i, x, mat<T>())) < tol);
    CHECK(row_relative_error(phi_of<U, T>(salt::elu_plus_one{}, x), features_def<U>(salt::elu_plus_one{}, x, mat<T>())) < tol);
  }
}

TEMPLATE_TEST_CASE("exponential maps stay finite at |x| = 30", "[linear][maps]", float, double) {
  using T = TestType;
  random_source rng(8);
  const mat<T> x = rng.matrix<T>(9, 64, 30.0);
  const auto w = salt::random_features<T>::orthogonal(128, 64, 2);
  for (const bool trig : {false, true}) {
    const idx m = trig ? 256 : 128;
    mat<T> f(9, m);
    T scale[9];
    if (trig) {
      salt::favor_trig<T>(w).map(salt::feature_input<T>(x.data(), 9, 64, Eigen::OuterStride<>(64)),
                                 salt::feature_output<T>(f.data(), 9, m, Eigen::OuterStride<>(m)), scale);
    } else {
      salt::favor_plus<T>(w).map(salt::feature_input<T>(x.data(), 9, 64, Eigen::OuterStride<>(64)),
                                 salt::feature_output<T>(f.data(), 9, m, Eigen::OuterStride<>(m)), scale);
      for (idx r = 0; r < 9; ++r) CHECK(f.row(r).maxCoeff() == T(1));  // each row's largest feature is 1
    }
    CAPTURE(trig);
    CHECK(f.allFinite());
    for (const T s : scale) CHECK(std::isfinite(s));
  }
}
