// Linear attention's backward: dq, dk and dv of every shipped map, non-causal and causal (alignments, offsets,
// key padding, Lq != Lk, GQA), against the textbook gradients of the formula (linear_reference.hpp:
// linear_backward_def) under the accuracy criterion, and against central finite differences in double; the
// stabilisation at |x| = 30 (scales far past the state's margin) and at keys whose scales jump inside a chunk;
// bits for any thread count; rows that see nothing; NaN locality; errors.
#include <salt/linear.hpp>
#include <salt/linear_backward.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "catch.hpp"
#include "checks.hpp"
#include "linear_reference.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;
template <class U>
using mat = salt::row_matrix<U>;

struct case_mask {
  bool causal;
  idx shift;
  idx len;
};

/// One head's gradients against the textbook backward: kernel, naive in T, oracle; the floor adds what the
/// kernels' association may (linear_gradient_floor).
template <class T, class Map, class Mask>
void check_map_backward(const std::string& name, const Map& map, const mat<T>& w, const mat<T>& q, const mat<T>& k,
                        const mat<T>& v, const mat<T>& dout, const Mask& mask, case_mask cm) {
  using U = oracle_t<T>;
  const mat<T> out = salt::linear_attention(q, k, v, map, mask);
  const auto g = salt::linear_attention_backward(q, k, v, out, dout, map, mask);
  const auto naive = linear_backward_def<T>(map, q, k, v, dout, w, cm.causal, cm.shift, cm.len);
  const auto ref = linear_backward_def<U>(map, q, k, v, dout, w, cm.causal, cm.shift, cm.len);
  const idx m = map.features(q.cols());
  auto one = [&](const mat<T>& kernel, const mat<T>& n, const mat<U>& r, double terms) {
    auto acc = judge<T>(kernel, n, r, finite_scale(r));
    acc.floor += linear_gradient_floor<T>(k.rows(), q.rows(), m, q.cols(), terms);
    return acc;
  };
  const auto dq = one(g.dq, naive.dq, ref.dq, ref.dq_terms), dk = one(g.dk, naive.dk, ref.dk, ref.dk_terms),
             dv = one(g.dv, naive.dv, ref.dv, ref.dv_terms);
  CAPTURE(name, q.rows(), k.rows(), q.cols(), v.cols(), cm.causal, cm.shift, cm.len, sizeof(T));
  CAPTURE(dq.kernel_error, dq.naive_error, dq.floor, dk.kernel_error, dk.naive_error, dk.floor, dv.kernel_error,
          dv.naive_error, dv.floor);
  CHECK(dq.ok());
  CHECK(dk.ok());
  CHECK(dv.ok());
}

/// Every map over the masks, for one shape; or FAVOR+ alone, for inputs of magnitude `scale` (trig features
/// there are noise, e^(|x'|^2 / 2) past the oracle's range).
template <class T>
void check_all_maps(idx lq, idx lk, idx d, idx dv, std::uint64_t seed, double scale = 1.0, bool favor_only = false) {
  random_source rng(seed);
  const mat<T> q = rng.matrix<T>(lq, d, scale), k = rng.matrix<T>(lk, d, scale), v = rng.matrix<T>(lk, dv),
               dout = rng.matrix<T>(lq, dv);
  const auto w = salt::random_features<T>::orthogonal(2 * d + 5, d, seed);
  const mat<T> none;
  const std::vector<idx> len{lk - lk / 3};
  const salt::key_padding pad{len};
  auto each_mask = [&](const std::string& name, const auto& map, const mat<T>& wm) {
    check_map_backward<T>(name + " no_mask", map, wm, q, k, v, dout, salt::no_mask{}, {false, 0, lk});
    check_map_backward<T>(name + " key_padding", map, wm, q, k, v, dout, pad, {false, 0, len[0]});
    check_map_backward<T>(name + " causal", map, wm, q, k, v, dout, salt::causal{}, {true, lk - lq, lk});
    check_map_backward<T>(name + " causal<top_left>{-2}", map, wm, q, k, v, dout,
                          salt::causal<salt::causal_alignment::top_left>{.offset = -2}, {true, -2, lk});
    check_map_backward<T>(name + " causal & key_padding", map, wm, q, k, v, dout, salt::causal{} & pad,
                          {true, lk - lq, len[0]});
  };
  each_mask("favor_plus", salt::favor_plus<T>(w), w.matrix());
  if (favor_only) return;
  each_mask("favor_trig", salt::favor_trig<T>(w), w.matrix());
  each_mask("relu(Wx)", salt::relu_features<T>(w), w.matrix());
  each_mask("relu(x)", salt::relu_features<T>(), none);
  each_mask("elu+1", salt::elu_plus_one{}, none);
}

/// Central differences of sum(out o dout) by every entry of x, in double; the step scales with the entry.
template <class F>
mat<double> central_differences(const mat<double>& x, const F& loss) {
  mat<double> g(x.rows(), x.cols());
  for (idx r = 0; r < x.rows(); ++r)
    for (idx c = 0; c < x.cols(); ++c) {
      const double h = 1e-5 * std::max(1.0, std::abs(x(r, c)));
      mat<double> up = x, down = x;
      up(r, c) += h, down(r, c) -= h;
      g(r, c) = (loss(up) - loss(down)) / (2 * h);
    }
  return g;
}

}  // namespace

TEMPLATE_TEST_CASE("linear attention's gradients match the textbook backward of its formula", "[linear][backward]",
                   float, double) {
  struct shape {
    idx lq, lk, d, dv;
  };
  // Chunks are 64 queries: shapes below, at and past one and several chunks, Lq != Lk both ways.
  for (const shape s : {shape{1, 1, 4, 3}, shape{7, 7, 8, 8}, shape{65, 65, 16, 5}, shape{129, 129, 8, 16},
                        shape{100, 200, 16, 8}, shape{200, 100, 8, 8}}) {
    if (!in_sweep(s.lq, s.lk)) continue;
    check_all_maps<TestType>(s.lq, s.lk, s.d, s.dv, static_cast<std::uint64_t>(s.lq * 1000 + s.lk));
  }
}

TEMPLATE_TEST_CASE("linear attention's gradients stay accurate at |x| = 30, scales far past the state's margin",
                   "[linear][backward]", float, double) {
  // FAVOR+'s log scales then spread over hundreds: the forward raises the state's reference, and the backward
  // must follow each row's reference and carry G at the smallest, never overflowing.
  check_all_maps<TestType>(150, 150, 8, 6, 77, 30.0, true);
}

TEMPLATE_TEST_CASE("linear attention's gradients follow a jump of the keys' scales, between chunks and inside one",
                   "[linear][backward]", float, double) {
  // The first keys, of norm 24 (float) or 47 (double), have FAVOR+ log scales of |x'|^2 / 2 - max_l w_l . x' or
  // less, below the later keys' (about 0) by more than the state's margin (2^40 in float, 2^320 in double), so
  // the forward raises the reference at the first later key: the rows after it read the earlier state scaled
  // down, and going back G must be scaled down to the earlier rows' reference before they join it. Without
  // either scaling dq or dk is off by O(1) or more. In float the naive formula's features of the first keys
  // underflow, which widens the criterion; in double nothing underflows and the bar is tight.
  using T = TestType;
  const idx L = 200, d = 8, dv = 4;
  const auto w = salt::random_features<T>::orthogonal(16, d, 1);
  for (const idx jump : {idx{100}, idx{30}}) {
    random_source rng(3);
    const mat<T> q = rng.matrix<T>(L, d), v = rng.matrix<T>(L, dv), dout = rng.matrix<T>(L, dv);
    mat<T> k = rng.matrix<T>(L, d);
    for (idx j = 0; j < jump; ++j) k.row(j) *= T(std::is_same_v<T, float> ? 24 : 47) / k.row(j).norm();
    CAPTURE(jump);
    check_map_backward<T>("favor_plus causal", salt::favor_plus<T>(w), w.matrix(), q, k, v, dout, salt::causal{},
                          {true, 0, L});
  }
}

TEST_CASE("linear attention's gradients agree with central finite differences", "[linear][backward]") {
  const idx lq = 70, lk = 90, d = 6, dv = 4;
  random_source rng(11);
  const mat<double> q = rng.matrix<double>(lq, d), k = rng.matrix<double>(lk, d), v = rng.matrix<double>(lk, dv),
                    dout = rng.matrix<double>(lq, dv);
  const auto w = salt::random_features<double>::orthogonal(16, d, 5);
  auto check = [&](const std::string& name, const auto& map, const auto& mask) {
    const auto out = salt::linear_attention(q, k, v, map, mask);
    const auto g = salt::linear_attention_backward(q, k, v, out, dout, map, mask);
    auto loss = [&](const mat<double>& qq, const mat<double>& kk, const mat<double>& vv) {
      return (salt::linear_attention(qq, kk, vv, map, mask).array() * dout.array()).sum();
    };
    const mat<double> fq = central_differences(q, [&](const mat<double>& x) { return loss(x, k, v); });
    const mat<double> fk = central_differences(k, [&](const mat<double>& x) { return loss(q, x, v); });
    const mat<double> fv = central_differences(v, [&](const mat<double>& x) { return loss(q, k, x); });
    CAPTURE(name);
    // Central differences are off by O(h^2) times the third derivative and by the loss's rounding / h: 1e-7
    // relative to the gradients' scale is far above both and far below a wrong term.
    CHECK(max_abs_diff(g.dq, fq) <= 1e-7 * finite_scale(fq));
    CHECK(max_abs_diff(g.dk, fk) <= 1e-7 * finite_scale(fk));
    CHECK(max_abs_diff(g.dv, fv) <= 1e-7 * finite_scale(fv));
  };
  const std::vector<idx> len{77};
  for (const bool causal : {false, true}) {
    auto run = [&](const std::string& name, const auto& map) {
      if (causal) check(name + " causal & key_padding", map, salt::causal{} & salt::key_padding{len});
      else check(name + " key_padding", map, salt::key_padding{len});
    };
    run("favor_plus", salt::favor_plus<double>(w));
    run("favor_trig", salt::favor_trig<double>(w));
    run("relu(Wx)", salt::relu_features<double>(w));
    run("elu+1", salt::elu_plus_one{});
  }
}

TEMPLATE_TEST_CASE("linear attention's grouped-query gradients sum each group's heads, the same bits on any thread count",
                   "[linear][backward]", float, double) {
  using T = TestType;
  const idx B = 2, Hq = 4, Hkv = 2, lq = 150, lk = 130, d = 8, dv = 6;
  random_source rng(21);
  const mat<T> q = rng.matrix<T>(B * Hq * lq, d), k = rng.matrix<T>(B * Hkv * lk, d), v = rng.matrix<T>(B * Hkv * lk, dv),
               dout = rng.matrix<T>(B * Hq * lq, dv);
  const auto w = salt::random_features<T>::orthogonal(24, d, 2);
  const salt::favor_plus<T> map(w);
  const std::vector<idx> len{lk, 101};
  using cv = salt::tensor_view<const T>;
  using tv = salt::tensor_view<T>;
  auto run = [&](const auto& mask, int threads) {
    mat<T> out(B * Hq * lq, dv), dq(q.rows(), d), dk(k.rows(), d), dvv(v.rows(), dv);
    const cv qv = cv::bhld(q.data(), B, Hq, lq, d), kv = cv::bhld(k.data(), B, Hkv, lk, d),
             vv = cv::bhld(v.data(), B, Hkv, lk, dv);
    salt::linear_attention(qv, kv, vv, tv::bhld(out.data(), B, Hq, lq, dv), map, mask, {.threads = threads});
    salt::linear_attention_backward(qv, kv, vv, cv::bhld(out.data(), B, Hq, lq, dv), cv::bhld(dout.data(), B, Hq, lq, dv),
                                    tv::bhld(dq.data(), B, Hq, lq, d), tv::bhld(dk.data(), B, Hkv, lk, d),
                                    tv::bhld(dvv.data(), B, Hkv, lk, dv), map, mask, {.threads = threads});
    return std::vector<mat<T>>{dq, dk, dvv};
  };
  auto check = [&](const auto& mask, bool causal) {
    const auto g = run(mask, 1);
    for (const int threads : {2, 7}) {
      const auto h = run(mask, threads);
      CHECK(h[0] == g[0]);
      CHECK(h[1] == g[1]);
      CHECK(h[2] == g[2]);
    }
    // Each K/V head against the sum of its query heads' one-head gradients (each checked above).
    for (idx b = 0; b < B; ++b)
      for (idx gi = 0; gi < Hkv; ++gi) {
        mat<T> dk = mat<T>::Zero(lk, d), dvv = mat<T>::Zero(lk, dv);
        const mat<T> kh = k.middleRows((b * Hkv + gi) * lk, lk), vh = v.middleRows((b * Hkv + gi) * lk, lk);
        for (idx h = gi * (Hq / Hkv); h < (gi + 1) * (Hq / Hkv); ++h) {
          const idx qi = (b * Hq + h) * lq;
          const mat<T> qh = q.middleRows(qi, lq), doh = dout.middleRows(qi, lq);
          const std::vector<idx> one{len[static_cast<std::size_t>(b)]};
          const auto gh = causal ? salt::linear_attention_backward(qh, kh, vh,
                                                                   salt::linear_attention(qh, kh, vh, map, salt::causal{} & salt::key_padding{one}),
                                                                   doh, map, salt::causal{} & salt::key_padding{one})
                                 : salt::linear_attention_backward(qh, kh, vh, salt::linear_attention(qh, kh, vh, map, salt::key_padding{one}),
                                                                   doh, map, salt::key_padding{one});
          CHECK(g[0].middleRows(qi, lq) == gh.dq);
          dk += gh.dk, dvv += gh.dv;
        }
        const double tol = 64 * std::numeric_limits<T>::epsilon();  // the group sums in another order
        CHECK(max_abs_diff(g[1].middleRows((b * Hkv + gi) * lk, lk), dk) <= tol * finite_scale(dk));
        CHECK(max_abs_diff(g[2].middleRows((b * Hkv + gi) * lk, lk), dvv) <= tol * finite_scale(dvv));
      }
  };
  check(salt::key_padding{len}, false);
  check(salt::causal{} & salt::key_padding{len}, true);
}

TEST_CASE("linear attention's backward: rows that see nothing and keys nobody sees get zero gradients",
          "[linear][backward]") {
  // Bottom-right causal with Lq > Lk: the first 40 rows see no key. Key padding: keys past 60 are nobody's.
  const idx lq = 100, lk = 60, d = 8, dv = 4;
  random_source rng(5);
  const mat<float> q = rng.matrix<float>(lq, d), k = rng.matrix<float>(lk + 20, d), v = rng.matrix<float>(lk + 20, dv),
                   dout = rng.matrix<float>(lq, dv);
  const salt::favor_plus<float> map(salt::random_features<float>::orthogonal(16, d, 1));
  const std::vector<idx> len{lk};
  const auto mask = salt::causal<salt::causal_alignment::top_left>{.offset = -40} & salt::key_padding{len};
  const auto g = salt::linear_attention_backward(q, k, v, salt::linear_attention(q, k, v, map, mask), dout, map, mask);
  CHECK(g.dq.topRows(40).isZero(0));
  CHECK(g.dk.bottomRows(20).isZero(0));
  CHECK(g.dv.bottomRows(20).isZero(0));
  CHECK(g.dq.allFinite());
  CHECK(!g.dq.bottomRows(60).isZero(0));
}

TEMPLATE_TEST_CASE("a NaN reaches only the linear-attention gradients that depend on it", "[linear][backward]", float,
                   double) {
  using T = TestType;
  const idx L = 150, d = 8, dv = 4, bad = 100;
  random_source rng(9);
  const mat<T> q = rng.matrix<T>(L, d), v = rng.matrix<T>(L, dv);
  mat<T> k = rng.matrix<T>(L, d), dout = rng.matrix<T>(L, dv);
  const salt::favor_plus<T> map(salt::random_features<T>::orthogonal(16, d, 1));
  const salt::causal<salt::causal_alignment::top_left> mask{};
  {
    // Key 100 (inside the second chunk): rows before it do not see it.
    mat<T> kk = k;
    kk(bad, 3) = std::numeric_limits<T>::quiet_NaN();
    const auto g = salt::linear_attention_backward(q, kk, v, salt::linear_attention(q, kk, v, map, mask), dout, map, mask);
    const auto clean = salt::linear_attention_backward(q, k, v, salt::linear_attention(q, k, v, map, mask), dout, map, mask);
    CHECK(g.dq.topRows(bad).allFinite());
    CHECK(max_abs_diff(g.dq.topRows(bad), clean.dq.topRows(bad)) <= 64 * std::numeric_limits<T>::epsilon() * finite_scale(clean.dq));
  }
  {
    // dout of row 100: keys after it are not seen by it, and no other row's dq depends on its dout.
    mat<T> dd = dout;
    dd(bad, 1) = std::numeric_limits<T>::quiet_NaN();
    const auto g = salt::linear_attention_backward(q, k, v, salt::linear_attention(q, k, v, map, mask), dd, map, mask);
    CHECK(g.dk.bottomRows(L - bad - 1).allFinite());
    CHECK(g.dv.bottomRows(L - bad - 1).allFinite());
    CHECK(g.dq.topRows(bad).allFinite());
    CHECK(g.dq.bottomRows(L - bad - 1).allFinite());
  }
}

TEST_CASE("linear attention's backward refuses bad input with the sizes, and nothing is written",
          "[linear][backward][errors]") {
  const idx L = 20, d = 8, dv = 4;
  random_source rng(1);
  const mat<float> q = rng.matrix<float>(L, d), k = rng.matrix<float>(L, d), v = rng.matrix<float>(L, dv),
                   dout = rng.matrix<float>(L, dv);
  const salt::elu_plus_one map;
  const mat<float> out = salt::linear_attention(q, k, v, map);
  CHECK(error_of([&] { salt::linear_attention_backward(q, k, v, out, mat<float>(L - 1, dv), map); }) ==
        "salt::linear_attention_backward: dout is (1, 1, 19, 4) but must be (1, 1, 20, 4), as the forward's output "
        "(B, Hq, Lq, dv)");
  using cv = salt::tensor_view<const float>;
  using tv = salt::tensor_view<float>;
  mat<float> dq = mat<float>::Constant(L, d, 7), dvv = mat<float>::Constant(L, dv, 7), kk = k;
  CHECK(error_of([&] {
          salt::linear_attention_backward<float>(cv::of(q), cv::of(kk), cv::of(v), cv::of(out), cv::of(dout), tv::of(dq),
                                                 tv::of(kk), tv::of(dvv), map);
        }) == "salt::linear_attention_backward: a gradient overlaps an input; linear_attention_backward cannot run in "
              "place");
  const salt::favor_plus<float> wide(salt::random_features<float>::orthogonal(16, d + 1, 1));
  mat<float> dk = mat<float>::Constant(L, d, 7);
  CHECK(error_of([&] {
          salt::linear_attention_backward<float>(cv::of(q), cv::of(k), cv::of(v), cv::of(out), cv::of(dout), tv::of(dq),
                                                 tv::of(dk), tv::of(dvv), wide);
        }) == "salt::linear_attention_backward: favor_plus was drawn for d = 9 but the inputs have d = 8");
  CHECK(dq.isConstant(7));
  CHECK(dk.isConstant(7));
  CHECK(dvv.isConstant(7));
}
