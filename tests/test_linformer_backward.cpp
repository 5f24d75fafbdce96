// Linformer's backward (linformer_backward.hpp): every gradient, by Q, K, V and by the projections E and F,
// against central finite differences of salt's own double forward, for each sharing mode, several heads and
// batch items, grouped-query heads and key padding; bit-identical for any thread count; and its refusals.
#include <salt/linformer.hpp>
#include <salt/linformer_backward.hpp>

#include <cmath>
#include <vector>

#include "catch.hpp"
#include "checks.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using salt::linformer_sharing;
using namespace salt::test;
using cv = salt::tensor_view<const double>;
using mv = salt::tensor_view<double>;

/// The largest difference between the central difference of loss() by each entry of x (n values at data, step
/// 1e-5 max(1, |x|)) and the gradient g (n values).
template <class Loss>
double worst_fd_error(double* data, idx n, const double* g, const Loss& loss) {
  double worst = 0;
  for (idx i = 0; i < n; ++i) {
    const double saved = data[i], h = 1e-5 * std::max(1.0, std::abs(saved));
    data[i] = saved + h;
    const double up = loss();
    data[i] = saved - h;
    const double down = loss();
    data[i] = saved;
    worst = std::max(worst, std::abs((up - down) / (2 * h) - g[i]));
  }
  return worst;
}

struct linformer_case {
  idx batch, q_heads, kv_heads, lq, l, d, dv, kp, max_len;
  linformer_sharing mode;
  bool padded;
};

TEST_CASE("linformer backward: every gradient agrees with central finite differences in double", "[linformer][backward]") {
  const linformer_case cases[] = {
      {1, 1, 1, 9, 12, 3, 4, 5, 16, linformer_sharing::shared_heads, false},
      {2, 4, 2, 6, 10, 3, 2, 4, 12, linformer_sharing::per_head, true},
      {2, 2, 2, 5, 11, 2, 3, 3, 11, linformer_sharing::shared_heads, true},
      {1, 2, 1, 7, 9, 3, 3, 4, 9, linformer_sharing::shared_kv, false},
  };
  for (const linformer_case& c : cases) {
    CAPTURE(c.batch, c.q_heads, c.kv_heads, c.lq, c.l, c.kp, static_cast<int>(c.mode), c.padded);
    random_source rng(static_cast<std::uint64_t>(c.l * 100 + c.kp));
    auto q = rng.matrix<double>(c.batch * c.q_heads * c.lq, c.d, 2.0), k = rng.matrix<double>(c.batch * c.kv_heads * c.l, c.d, 2.0),
         v = rng.matrix<double>(c.batch * c.kv_heads * c.l, c.dv);
    const auto dout = rng.matrix<double>(c.batch * c.q_heads * c.lq, c.dv);
    auto proj = salt::linformer_projections<double>::gaussian(c.kp, c.max_len, c.kv_heads, c.mode, 3);
    const std::vector<idx> lengths{c.l - 3, c.l};
    const salt::key_padding padding{lengths};
    const auto views = [&] {
      return std::tuple{cv::bhld(q.data(), c.batch, c.q_heads, c.lq, c.d), cv::bhld(k.data(), c.batch, c.kv_heads, c.l, c.d),
                        cv::bhld(v.data(), c.batch, c.kv_heads, c.l, c.dv)};
    };
    salt::row_matrix<double> out(c.batch * c.q_heads * c.lq, c.dv);
    std::vector<double> lse(static_cast<std::size_t>(c.batch * c.q_heads * c.lq));
    const auto forward = [&](auto&& mask) {
      const auto [qv, kv, vv] = views();
      salt::linformer_attention<double>(qv, kv, vv, mv::bhld(out.data(), c.batch, c.q_heads, c.lq, c.dv),
                                        salt::lse_view<double>::bht(lse.data(), c.q_heads, c.lq), proj, mask);
      return out.cwiseProduct(dout).sum();
    };
    const auto check = [&](auto&& mask) {
      forward(mask);
      salt::row_matrix<double> dq(q.rows(), q.cols()), dk(k.rows(), k.cols()), dv(v.rows(), v.cols());
      const auto [qv, kv, vv] = views();
      const auto g = salt::linformer_backward<double>(
          qv, kv, vv, cv::bhld(out.data(), c.batch, c.q_heads, c.lq, c.dv),
          salt::lse_view<const double>::bht(lse.data(), c.q_heads, c.lq), cv::bhld(dout.data(), c.batch, c.q_heads, c.lq, c.dv),
          mv::bhld(dq.data(), c.batch, c.q_heads, c.lq, c.d), mv::bhld(dk.data(), c.batch, c.kv_heads, c.l, c.d),
          mv::bhld(dv.data(), c.batch, c.kv_heads, c.l, c.dv), proj, mask);
      const auto loss = [&] { return forward(mask); };
      // The central difference's error is about h^2 |L'''| (h = 1e-5) plus eps |L| / h: 1e-9 here.
      constexpr double tolerance = 1e-8;
      CHECK(worst_fd_error(q.data(), q.size(), dq.data(), loss) < tolerance);
      CHECK(worst_fd_error(k.data(), k.size(), dk.data(), loss) < tolerance);
      CHECK(worst_fd_error(v.data(), v.size(), dv.data(), loss) < tolerance);
      REQUIRE(static_cast<idx>(g.de.size()) == proj.heads());
      REQUIRE(g.df.size() == (c.mode == linformer_sharing::shared_kv ? 0u : g.de.size()));
      for (idx p = 0; p < proj.heads(); ++p) {
        CAPTURE(p);
        CHECK(worst_fd_error(proj.stored_e(p).data(), c.kp * c.max_len, g.de[static_cast<std::size_t>(p)].data(), loss) <
              tolerance);
        if (!g.df.empty())
          CHECK(worst_fd_error(proj.stored_f(p).data(), c.kp * c.max_len, g.df[static_cast<std::size_t>(p)].data(), loss) <
                tolerance);
      }
      // Batch item 0's padded positions have no gradient; E's columns past every sequence get none either.
      if (c.padded) CHECK(dk.middleRows(c.l - 3, 3).isZero(0));
      CHECK(g.de[0].rightCols(c.max_len - c.l).isZero(0));
    };
    if (c.padded) check(padding);
    else check(salt::no_mask{});
  }
}

TEST_CASE("linformer backward: one head, bit-identical for 1 and 3 threads", "[linformer][backward]") {
  random_source rng(31);
  const idx l = 700, kp = 96, d = 16;
  const auto q = rng.matrix<float>(l, d), k = rng.matrix<float>(l, d), v = rng.matrix<float>(l, d),
             dout = rng.matrix<float>(l, d);
  const auto proj = salt::linformer_projections<float>::gaussian(kp, 1024, 1, linformer_sharing::shared_heads, 4);
  const auto fwd = salt::linformer_attention_with_lse(q, k, v, proj);
  const auto one = salt::linformer_backward(q, k, v, proj, fwd, dout, salt::no_mask{}, {}, {.threads = 1});
  const auto three = salt::linformer_backward(q, k, v, proj, fwd, dout, salt::no_mask{}, {}, {.threads = 3});
  CHECK(one.dq == three.dq);
  CHECK(one.dk == three.dk);
  CHECK(one.dv == three.dv);
  CHECK(one.projections.de[0] == three.projections.de[0]);
  CHECK(one.projections.df[0] == three.projections.df[0]);
  CHECK(one.dq.allFinite());
  CHECK(!one.projections.de[0].isZero(0));
}

TEST_CASE("linformer backward: bad input is refused with the function's name", "[linformer][backward][bad_input]") {
  random_source rng(32);
  const auto q = rng.matrix<float>(6, 4), k = rng.matrix<float>(8, 4), v = rng.matrix<float>(8, 4),
             dout = rng.matrix<float>(6, 4);
  const auto proj = salt::linformer_projections<float>::gaussian(3, 6, 1, linformer_sharing::shared_heads, 4);
  const auto longer = salt::linformer_projections<float>::gaussian(3, 8, 1, linformer_sharing::shared_heads, 4);
  const auto fwd = salt::linformer_attention_with_lse(q, k, v, longer);
  CHECK(error_of([&] { salt::linformer_backward(q, k, v, proj, fwd, dout); }) ==
        "salt::linformer_backward: the sequence has 8 keys but the projections take at most 6 (max_len)");
  CHECK(error_of([&] { salt::linformer_backward(q, k, v, longer, fwd, dout.leftCols(3)); }) ==
        "salt::linformer_backward: dout is (1, 1, 6, 3) but must be (1, 1, 6, 4), as the forward's output (B, Hq, Lq, dv)");
}

}  // namespace
