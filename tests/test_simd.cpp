// The kernels' base-2 exponential against the C library's, over the whole range the engine feeds it.
#include <salt/detail/simd.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "catch.hpp"

namespace {

template <class T>
std::vector<T> pexp2_all(const std::vector<T>& x) {
  using namespace salt::detail;
  constexpr int N = lanes<T>;
  std::vector<T> y(x.size());
  alignas(64) T in[N], out[N];
  for (std::size_t i = 0; i < x.size(); i += N) {
    for (int l = 0; l < N; ++l) in[l] = i + l < x.size() ? x[i + l] : T(0);
    ei::pstore(out, pexp2<T>(ei::pload<packet<T>>(in)));
    for (int l = 0; l < N && i + l < x.size(); ++l) y[i + l] = out[l];
  }
  return y;
}

}  // namespace

TEMPLATE_TEST_CASE("pexp2 is accurate to a few ulp on [-126, 0] and exact at the edges", "[simd]", float, double) {
  using T = TestType;
  std::vector<T> x;
  for (int i = 0; i <= 200000; ++i) x.push_back(T(-126) * static_cast<T>(i) / T(200000));
  x.push_back(T(0));
  x.push_back(-std::numeric_limits<T>::infinity());
  x.push_back(std::numeric_limits<T>::quiet_NaN());
  x.push_back(T(-5000));
  const auto y = pexp2_all(x);
  double worst_ulps = 0;
  for (std::size_t i = 0; i + 4 < x.size(); ++i) {
    const long double exact = std::exp2(static_cast<long double>(x[i]));
    const long double ulp = std::numeric_limits<T>::epsilon() * exact;
    worst_ulps = std::max(worst_ulps, static_cast<double>(std::abs(y[i] - exact) / ulp));
  }
  CAPTURE(worst_ulps);
  CHECK(worst_ulps < 3.0);
  CHECK(y[y.size() - 4] == T(1));
  CHECK(y[y.size() - 3] == T(0));
  CHECK(std::isnan(y[y.size() - 2]));
  CHECK(y[y.size() - 1] == T(0));
}

TEMPLATE_TEST_CASE("all_finite finds one non-finite element wherever it lies", "[simd]", float, double) {
  using T = TestType;
  using salt::index;
  // Widths around the packet size and a row stride wider than the block, so the vector body, the scalar
  // tail and the gap between rows (never read) are all exercised.
  for (const index cols : {index{1}, index{7}, index{16}, index{33}, index{64}}) {
    const index rows = 5, stride = cols + 3;
    std::vector<T> block(static_cast<std::size_t>(rows * stride), T(1e30));
    for (index r = 0; r < rows; ++r)
      for (index c = cols; c < stride; ++c) block[static_cast<std::size_t>(r * stride + c)] = std::nan("");
    CHECK(salt::detail::all_finite(block.data(), rows, cols, stride));
    for (const T bad : {std::numeric_limits<T>::infinity(), -std::numeric_limits<T>::infinity(), T(std::nan(""))}) {
      for (index r = 0; r < rows; ++r)
        for (index c = 0; c < cols; ++c) {
          T& x = block[static_cast<std::size_t>(r * stride + c)];
          const T keep = x;
          x = bad;
          CAPTURE(cols, r, c, bad);
          CHECK_FALSE(salt::detail::all_finite(block.data(), rows, cols, stride));
          x = keep;
        }
    }
  }
}
