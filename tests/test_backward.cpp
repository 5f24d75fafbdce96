// The exact engine's backward pass (attention_backward.hpp): gradients against the textbook backward in fp64
// (long double for double) under the accuracy criterion, for every score it can differentiate, grouped-query
// heads and Lq != Lk; against central finite differences of salt's own forward in double; bit-identical for
// any thread count; zero gradients for rows that see nothing; NaN only where the naive backward has it; and
// the refusals; and PyTorch's autograd through SDPA in float64 (tools/make_sdpa_backward_fixtures.py) to 1e-10.
// Every mask is swept in test_backward_masks.cpp.
#include <salt/attention.hpp>
#include <salt/attention_backward.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "backward_checks.hpp"
#include "catch.hpp"
#include "checks.hpp"
#include "fixtures.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;

TEMPLATE_TEST_CASE("backward: dense and causal heads against the textbook backward", "[backward]", float, double) {
  using T = TestType;
  random_source rng(11);
  for (const auto& [lq, lk] : {std::pair<idx, idx>{1, 1}, {7, 7}, {33, 65}, {65, 33}, {130, 257}}) {
    for (const idx d : {8, 20}) {
      CAPTURE(lq, lk, d);
      const auto q = rng.matrix<T>(lq, d), k = rng.matrix<T>(lk, d), v = rng.matrix<T>(lk, d + 3),
                 dout = rng.matrix<T>(lq, d + 3);
      check_head_backward<T>(q, k, v, dout, salt::no_mask{});
      check_head_backward<T>(q, k, v, dout, salt::causal{});
      check_head_backward<T>(q, k, v, dout, salt::sliding_window{5, 2});
    }
  }
}

TEMPLATE_TEST_CASE("backward: every differentiable score", "[backward]", float, double) {
  using T = TestType;
  random_source rng(12);
  const idx lq = 70, lk = 90, d = 16;
  const auto q = rng.matrix<T>(lq, d, 3.0), k = rng.matrix<T>(lk, d, 3.0), v = rng.matrix<T>(lk, d),
             dout = rng.matrix<T>(lq, d);
  const std::vector<double> slopes{0.25}, sinks{0.7};
  const salt::row_matrix<T> table = rng.matrix<T>(lq, lk);
  const salt::row_matrix<T> synth = rng.matrix<T>(lk, lk);
  const auto bias = salt::bias_table<T>::shared(table);
  const auto random_table = salt::synthesizer_random<T>::shared(synth);
  SECTION("scaled") { check_head_backward<T>(q, k, v, dout, salt::causal{}, salt::dot_product{0.3}); }
  SECTION("alibi") { check_head_backward<T>(q, k, v, dout, salt::causal{}, salt::dot_product{} + salt::alibi{slopes}); }
  SECTION("bias table") { check_head_backward<T>(q, k, v, dout, salt::no_mask{}, salt::dot_product{} + bias); }
  SECTION("softcap") { check_head_backward<T>(q, k, v, dout, salt::causal{}, salt::softcap{1.5}); }
  SECTION("softcap of dot + bias") {
    check_head_backward<T>(q, k, v, dout, salt::no_mask{}, bias + salt::softcap{2.0});
  }
  SECTION("softcap, then alibi") {
    check_head_backward<T>(q, k, v, dout, salt::causal{}, salt::softcap{2.0} + salt::alibi{slopes});
  }
  SECTION("sinks") {
    check_head_backward<T>(q, k, v, dout, salt::causal{}, salt::dot_product{} + salt::attention_sinks{sinks});
  }
  SECTION("a Synthesizer table alone: dq = dk = 0") {
    const auto fwd = salt::attention_with_lse(q, k, v, salt::no_mask{}, random_table);
    const auto g = salt::attention_backward(q, k, v, fwd, dout, salt::no_mask{}, random_table);
    CHECK(g.dq.isZero(0));
    CHECK(g.dk.isZero(0));
    check_head_backward<T>(q, k, v, dout, salt::no_mask{}, random_table);
  }
  SECTION("dot + Synthesizer table") {
    check_head_backward<T>(q, k, v, dout, salt::causal{}, salt::dot_product{} + random_table);
  }
}

TEMPLATE_TEST_CASE("backward: grouped-query heads sum dk and dv over each group", "[backward]", float, double) {
  using T = TestType;
  random_source rng(13);
  for (const auto& [batch, hq, hkv] : {std::tuple<idx, idx, idx>{1, 4, 1}, {2, 4, 2}, {3, 6, 3}}) {
    for (const auto& [lq, lk] : {std::pair<idx, idx>{1, 40}, {50, 50}, {20, 97}}) {
      CAPTURE(batch, hq, hkv, lq, lk);
      const auto m = run_multi_head_backward<T>(batch, hq, hkv, lq, lk, 12, 10, salt::causal{}, salt::dot_product{}, rng);
      check_multi_head_backward<T>(m, salt::causal{});
    }
  }
}

/// L = sum(dout o attention(q, k, v)), by salt's double forward.
template <class Mask, class Score>
double loss(const salt::row_matrix<double>& q, const salt::row_matrix<double>& k, const salt::row_matrix<double>& v,
            const salt::row_matrix<double>& dout, const Mask& mask, const Score& score) {
  return salt::attention(q, k, v, mask, score).cwiseProduct(dout).sum();
}

/// Central differences of the loss by every entry of x (one of q, k, v), step h * max(1, |x|), against g.
template <class F>
double worst_fd_error(salt::row_matrix<double>& x, const salt::row_matrix<double>& g, F&& loss_of) {
  double worst = 0;
  for (idx i = 0; i < x.rows(); ++i)
    for (idx j = 0; j < x.cols(); ++j) {
      const double saved = x(i, j), h = 1e-5 * std::max(1.0, std::abs(saved));
      x(i, j) = saved + h;
      const double up = loss_of();
      x(i, j) = saved - h;
      const double down = loss_of();
      x(i, j) = saved;
      worst = std::max(worst, std::abs((up - down) / (2 * h) - g(i, j)));
    }
  return worst;
}

TEST_CASE("backward: gradients agree with central finite differences in double", "[backward]") {
  random_source rng(14);
  const idx lq = 9, lk = 13, d = 5, dv = 4;
  auto q = rng.matrix<double>(lq, d, 2.0), k = rng.matrix<double>(lk, d, 2.0), v = rng.matrix<double>(lk, dv);
  const auto dout = rng.matrix<double>(lq, dv);
  const std::vector<double> slopes{0.3};
  auto check = [&](const auto& mask, const auto& score) {
    const auto fwd = salt::attention_with_lse(q, k, v, mask, score);
    const auto g = salt::attention_backward(q, k, v, fwd, dout, mask, score);
    auto l = [&] { return loss(q, k, v, dout, mask, score); };
    // The central difference's error is about h^2 |L'''| (h = 1e-5) plus eps |L| / h: 1e-9 here.
    const double tolerance = 1e-8;
    CHECK(worst_fd_error(q, g.dq, l) < tolerance);
    CHECK(worst_fd_error(k, g.dk, l) < tolerance);
    CHECK(worst_fd_error(v, g.dv, l) < tolerance);
  };
  SECTION("dense") { check(salt::no_mask{}, salt::dot_product{}); }
  SECTION("causal, softcap") { check(salt::causal{}, salt::softcap{1.2}); }
  SECTION("window, alibi") { check(salt::sliding_window{3, 1}, salt::dot_product{} + salt::alibi{slopes}); }
}

/// The gradients' bits of one call.
template <class T>
std::vector<T> gradient_bits(const multi_head_gradients<T>& m) {
  std::vector<T> all;
  for (const auto* x : {&m.dq, &m.dk, &m.dv}) all.insert(all.end(), x->data(), x->data() + x->size());
  return all;
}

TEST_CASE("backward: gradients are bit-identical for 1, 2 and 7 threads", "[backward]") {
  const salt::bigbird_table table = salt::bigbird_random_table(2, 512 / 16, 2, 5);
  const salt::bigbird bb = table.mask(16);
  auto run = [&](idx batch, idx hq, idx hkv, idx l, int threads, auto mask) {
    random_source rng(15);
    return gradient_bits(run_multi_head_backward<float>(batch, hq, hkv, l, l, 32, 32, mask, salt::dot_product{}, rng,
                                                        salt::run_options{threads}));
  };
  for (const int threads : {2, 7}) {
    CAPTURE(threads);
    CHECK(run(1, 1, 1, 700, 1, salt::no_mask{}) == run(1, 1, 1, 700, threads, salt::no_mask{}));   // 11 key partitions
    CHECK(run(1, 1, 1, 700, 1, salt::causal{}) == run(1, 1, 1, 700, threads, salt::causal{}));
    CHECK(run(4, 8, 4, 130, 1, salt::causal{}) == run(4, 8, 4, 130, threads, salt::causal{}));  // one partition
    CHECK(run(1, 2, 1, 512, 1, bb) == run(1, 2, 1, 512, threads, bb));
  }
}

TEST_CASE("backward: rows that see no key get zero gradients, never NaN", "[backward]") {
  random_source rng(16);
  const idx lq = 40, lk = 50, d = 8;
  const auto q = rng.matrix<float>(lq, d), k = rng.matrix<float>(lk, d), v = rng.matrix<float>(lk, d),
             dout = rng.matrix<float>(lq, d);
  const std::vector<idx> none{0};
  const salt::key_padding mask{none};
  const auto fwd = salt::attention_with_lse(q, k, v, mask);
  const auto g = salt::attention_backward(q, k, v, fwd, dout, mask);
  CHECK(g.dq.isZero(0));
  CHECK(g.dk.isZero(0));
  CHECK(g.dv.isZero(0));
  // Queries past the causal diagonal of a shorter cache (Lq > Lk) see nothing; the others are judged as usual.
  check_head_backward<float>(rng.matrix<float>(60, d), rng.matrix<float>(20, d), rng.matrix<float>(20, d),
                             rng.matrix<float>(60, d), salt::causal{});
}

TEMPLATE_TEST_CASE("backward: NaN in one key reaches only the gradients that depend on it", "[backward]", float, double) {
  using T = TestType;
  random_source rng(17);
  const idx l = 200, d = 8;
  auto q = rng.matrix<T>(l, d), k = rng.matrix<T>(l, d), v = rng.matrix<T>(l, d);
  const auto dout = rng.matrix<T>(l, d);
  SECTION("a key") { k(100, 3) = std::numeric_limits<T>::quiet_NaN(); }
  SECTION("a value") { v(100, 5) = std::numeric_limits<T>::infinity(); }
  SECTION("a query") { q(30, 0) = std::numeric_limits<T>::quiet_NaN(); }
  // A window keeps the damage local; max_abs_diff requires NaN where, and only where, the textbook has it.
  check_head_backward<T>(q, k, v, dout, salt::sliding_window{20, 20});
  check_head_backward<T>(q, k, v, dout, salt::causal{});
}

/// A (heads, rows, cols) fixture record as one (heads rows, cols) matrix: the bhld layout of a batch of one.
salt::row_matrix<double> stacked(const fixture_file& f, const std::string& name) {
  const auto& a = f.get(name);
  REQUIRE(a.shape.size() == 3);
  salt::row_matrix<double> m(a.shape[0] * a.shape[1], a.shape[2]);
  std::copy(a.values.begin(), a.values.end(), m.data());
  return m;
}

TEST_CASE("backward: PyTorch's autograd through SDPA, reproduced to 1e-10 in double", "[backward][fixtures]") {
  const auto files = fixtures_named("sdpa_backward_");
  REQUIRE(files.size() >= 5);  // a missing fixture fails, never skips
  for (const std::string& path : files) {
    CAPTURE(path);
    const fixture_file f(path);
    const auto q = stacked(f, "q"), k = stacked(f, "k"), v = stacked(f, "v"), dout = stacked(f, "dout");
    const idx hq = f.get("q").shape[0], hkv = f.get("k").shape[0], lq = f.get("q").shape[1], lk = f.get("k").shape[1];
    const idx d = q.cols(), dv = v.cols();
    using cv = salt::tensor_view<const double>;
    using mv = salt::tensor_view<double>;
    salt::row_matrix<double> out(hq * lq, dv), dq(q.rows(), d), dk(k.rows(), d), dvg(v.rows(), dv);
    std::vector<double> lse(static_cast<std::size_t>(hq * lq));
    auto run = [&](const auto& mask) {
      salt::attention(cv::bhld(q.data(), 1, hq, lq, d), cv::bhld(k.data(), 1, hkv, lk, d), cv::bhld(v.data(), 1, hkv, lk, dv),
                      mv::bhld(out.data(), 1, hq, lq, dv), salt::lse_view<double>::bht(lse.data(), hq, lq), mask);
      salt::attention_backward<double>(cv::bhld(q.data(), 1, hq, lq, d), cv::bhld(k.data(), 1, hkv, lk, d),
                                       cv::bhld(v.data(), 1, hkv, lk, dv), cv::bhld(out.data(), 1, hq, lq, dv),
                                       salt::lse_view<const double>::bht(lse.data(), hq, lq),
                                       cv::bhld(dout.data(), 1, hq, lq, dv), mv::bhld(dq.data(), 1, hq, lq, d),
                                       mv::bhld(dk.data(), 1, hkv, lk, d), mv::bhld(dvg.data(), 1, hkv, lk, dv), mask);
    };
    const auto mask = static_cast<int>(f.scalar("mask"));
    if (mask == 0) run(salt::no_mask{});
    else if (mask == 1) run(salt::causal{});
    else run(salt::sliding_window{static_cast<idx>(f.scalar("left")), static_cast<idx>(f.scalar("right"))});
    CHECK(max_abs_diff(out, stacked(f, "out")) < 1e-10);
    CHECK(max_abs_diff(dq, stacked(f, "dq")) < 1e-10);
    CHECK(max_abs_diff(dk, stacked(f, "dk")) < 1e-10);
    CHECK(max_abs_diff(dvg, stacked(f, "dv")) < 1e-10);
  }
}

TEST_CASE("backward: bad input is refused with the sizes, and nothing is written", "[backward][bad_input]") {
  random_source rng(18);
  const idx lq = 6, lk = 8, d = 4;
  const auto q = rng.matrix<float>(lq, d), k = rng.matrix<float>(lk, d), v = rng.matrix<float>(lk, d),
             dout = rng.matrix<float>(lq, d);
  const auto fwd = salt::attention_with_lse(q, k, v);
  using cv = salt::tensor_view<const float>;
  using mv = salt::tensor_view<float>;
  salt::row_matrix<float> dq = salt::row_matrix<float>::Constant(lq, d, 7), dk = salt::row_matrix<float>::Constant(lk, d, 7),
                          dv = salt::row_matrix<float>::Constant(lk, d, 7);
  const auto call = [&](const cv& out, const cv& dov, const mv& dqv, const mv& dkv, const mv& dvv,
                        const salt::lse_view<const float>& lse) {
    return error_of([&] {
      salt::attention_backward<float>(cv::of(q), cv::of(k), cv::of(v), out, lse, dov, dqv, dkv, dvv);
    });
  };
  const salt::lse_view<const float> lse{fwd.lse.data(), 0, 0};
  const salt::row_matrix<float> wide(lq, d + 1);
  CHECK(call(cv::of(fwd.out), cv::of(wide), mv::of(dq), mv::of(dk), mv::of(dv), lse) ==
        "salt::attention_backward: dout is (1, 1, 6, 5) but must be (1, 1, 6, 4), as the forward's output (B, Hq, Lq, dv)");
  CHECK(call(cv::of(fwd.out), cv::of(dout), mv::of(dk), mv::of(dk), mv::of(dv), lse) ==
        "salt::attention_backward: dq is (1, 1, 8, 4) but must be (1, 1, 6, 4), as q");
  CHECK(call(cv::of(fwd.out), cv::of(dout), mv::of(dq), mv::of(dq), mv::of(dv), lse) ==
        "salt::attention_backward: dk is (1, 1, 6, 4) but must be (1, 1, 8, 4), as k");
  CHECK(call(cv::of(fwd.out), cv::of(dout), mv::of(dq), mv::of(dk), mv::of(dk), lse) ==
        "salt::attention_backward: dq, dk and dv must not overlap one another");
  CHECK(call(cv::of(fwd.out), cv::of(dout), mv::of(dq), mv::of(dk), mv::of(dv), {}) ==
        "salt::attention_backward: the forward's LSE is required (pass the lse_view the forward wrote)");
  salt::row_matrix<float> kcopy = k;
  CHECK(error_of([&] {
          salt::attention_backward<float>(cv::of(q), cv::of(kcopy), cv::of(v), cv::of(fwd.out), lse, cv::of(dout),
                                          mv::of(dq), mv::of(kcopy), mv::of(dv));
        }) == "salt::attention_backward: a gradient overlaps an input; attention_backward cannot run in place");
  CHECK(dq.isConstant(7));
  CHECK(dk.isConstant(7));
  CHECK(dv.isConstant(7));
  CHECK(error_of([&] { salt::attention_backward(q, k, v, salt::attention_with_lse(q.topRows(3), k, v), dout); }) ==
        "salt::attention_backward: the forward's LSE has 3 rows but q has 6");
}

}  // namespace
