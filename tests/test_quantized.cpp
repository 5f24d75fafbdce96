// int8 K and V with scales (quantized.hpp). quantize: the scale is the group's max |x| / 127 and every element
// comes back within half a scale. attention over a quantized cache, with one scale per token and head and with
// groups of 32 features, float and bf16 queries, prefill and decode shapes (keys cut into partitions), grouped
// heads: bit for bit the float kernel on the dequantized values, and against the fp64 oracle on those values under
// the criterion of DESIGN.md §6. Bad shapes and non-finite inputs: salt::error, nothing written.
#include <salt/attention.hpp>
#include <salt/quantized.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "catch.hpp"
#include "checks.hpp"
#include "low_precision_checks.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;
using bf16 = Eigen::bfloat16;

/// A quantized (batch, heads, tokens, features) tensor that owns its values and scales.
struct quantized_tensor {
  idx batch, heads, tokens, features, group;
  std::vector<std::int8_t> values;
  std::vector<float> scales;
  quantized_tensor(idx b, idx h, idx t, idx d, idx g)
      : batch(b), heads(h), tokens(t), features(d), group(g == 0 ? d : g),
        values(static_cast<std::size_t>(b * h * t * d)), scales(static_cast<std::size_t>(b * h * t * (d / group))) {}
  salt::quantized_view<std::int8_t> view() {
    return salt::quantized_view<std::int8_t>::bhld(values.data(), scales.data(), batch, heads, tokens, features, group);
  }
  /// The values the kernels compute with, float(value) * scale, as (B H L, d) rows.
  salt::row_matrix<float> dequantized() const {
    salt::row_matrix<float> x(batch * heads * tokens, features);
    for (idx r = 0; r < x.rows(); ++r)
      for (idx c = 0; c < features; ++c)
        x(r, c) = static_cast<float>(values[static_cast<std::size_t>(r * features + c)]) *
                  scales[static_cast<std::size_t>(r * (features / group) + c / group)];
    return x;
  }
};

quantized_tensor quantized(const salt::row_matrix<float>& x, idx b, idx h, idx t, idx g) {
  quantized_tensor q(b, h, t, x.cols(), g);
  salt::quantize<float>(salt::tensor_view<const float>::bhld(x.data(), b, h, t, x.cols()), q.view());
  return q;
}

using shape = gqa_shape;

/// A call with queries in S over a quantized K and V (groups gk, gv), against the float kernel on the dequantized
/// values (bits) and the oracle (criterion) per batch item and head; returns the heads checked.
template <class S, class Mask>
idx check_quantized_call(const shape& s, idx gk, idx gv, const Mask& mask, int threads = 0) {
  random_source rng(static_cast<std::uint64_t>(s.lq * 131 + s.lk * 7 + gk + 3 * gv));
  const salt::row_matrix<S> q = rng.matrix<double>(s.batch * s.q_heads * s.lq, s.d).cast<S>();
  const salt::row_matrix<float> k_raw = rng.matrix<float>(s.batch * s.kv_heads * s.lk, s.d),
                                v_raw = rng.matrix<float>(s.batch * s.kv_heads * s.lk, s.d);
  quantized_tensor k8 = quantized(k_raw, s.batch, s.kv_heads, s.lk, gk), v8 = quantized(v_raw, s.batch, s.kv_heads, s.lk, gv);
  salt::row_matrix<S> out(s.batch * s.q_heads * s.lq, s.d);
  std::vector<float> lse(static_cast<std::size_t>(s.batch * s.q_heads * s.lq));
  salt::attention(salt::tensor_view<const S>::bhld(q.data(), s.batch, s.q_heads, s.lq, s.d), k8.view(), v8.view(),
                  salt::tensor_view<S>::bhld(out.data(), s.batch, s.q_heads, s.lq, s.d),
                  salt::lse_view<float>::bht(lse.data(), s.q_heads, s.lq), mask, salt::dot_product{},
                  salt::run_options{.threads = threads});
  // The float kernel on the dequantized values.
  const salt::row_matrix<float> qf = q.template cast<float>(), kf = k8.dequantized(), vf = v8.dequantized();
  salt::row_matrix<float> wide(out.rows(), out.cols());
  std::vector<float> wide_lse(lse.size());
  using fview = salt::tensor_view<const float>;
  salt::attention(fview::bhld(qf.data(), s.batch, s.q_heads, s.lq, s.d), fview::bhld(kf.data(), s.batch, s.kv_heads, s.lk, s.d),
                  fview::bhld(vf.data(), s.batch, s.kv_heads, s.lk, s.d),
                  salt::tensor_view<float>::bhld(wide.data(), s.batch, s.q_heads, s.lq, s.d),
                  salt::lse_view<float>::bht(wide_lse.data(), s.q_heads, s.lq), mask);
  CHECK(same_bits<S>(out, wide.cast<S>()));
  CHECK(lse == wide_lse);
  return check_each_head<S>(s, qf, kf, vf, out, lse, mask);
}

}  // namespace

TEST_CASE("quantize: scales are max |x| / 127 per token, head and group; values come back within half a scale",
          "[quantized]") {
  random_source rng(1);
  const idx b = 2, h = 3, t = 17, d = 64;
  salt::row_matrix<float> x = rng.matrix<float>(b * h * t, d, 3.0);
  x.row(5).setZero();  // a token of zeros: scale 0, values 0
  for (const idx group : {idx{0}, idx{32}, idx{8}}) {
    CAPTURE(group);
    const quantized_tensor q = quantized(x, b, h, t, group);
    const idx g = group == 0 ? d : group;
    const salt::row_matrix<float> back = q.dequantized();
    for (idx r = 0; r < x.rows(); ++r)
      for (idx c0 = 0; c0 < d; c0 += g) {
        const float scale = q.scales[static_cast<std::size_t>(r * (d / g) + c0 / g)];
        CHECK(scale == x.row(r).segment(c0, g).cwiseAbs().maxCoeff() / 127.0f);
        for (idx c = c0; c < c0 + g; ++c) {
          const auto v = q.values[static_cast<std::size_t>(r * d + c)];
          CHECK((v >= -127 && v <= 127));
          CHECK(std::abs(back(r, c) - x(r, c)) <= scale * 0.5f * (1 + 1e-5f) + 1e-30f);
        }
      }
    CHECK((back.row(5).array() == 0).all());
  }
}

TEST_CASE("attention over an int8 cache: the float kernel's bits on the dequantized values, and the oracle",
          "[quantized][reference]") {
  idx heads = 0;
  for (const shape s : {shape{1, 2, 1, 65, 65, 64}, shape{2, 8, 2, 1, 3000, 64}, shape{1, 4, 2, 5, 700, 32}}) {
    for (const idx group : {idx{0}, idx{32}}) {
      CAPTURE(s.lq, s.lk, s.d, group);
      heads += check_quantized_call<float>(s, group, group, salt::no_mask{});
      heads += check_quantized_call<float>(s, group, 0, salt::causal{});
      heads += check_quantized_call<float>(s, 0, group, salt::sliding_window{.left = 200, .right = 0});
      heads += check_quantized_call<bf16>(s, group, group, salt::causal{});
    }
  }
  CHECK(heads == 2 * 4 * (2 + 16 + 4));
}

TEST_CASE("attention over an int8 cache: the same bits on 1, 2 and 5 threads", "[quantized][threads]") {
  for (const int threads : {1, 2, 5}) {
    CAPTURE(threads);
    CHECK(check_quantized_call<float>(shape{2, 8, 2, 1, 5000, 64}, 32, 32, salt::causal{}, threads) == 16);
  }
}

TEST_CASE("quantized caches: bad shapes and non-finite inputs are refused, nothing written", "[quantized][bad_input]") {
  const idx d = 64, t = 10;
  std::vector<float> q(static_cast<std::size_t>(2 * t * d), 0.5f), out(q.size(), 7.0f);
  quantized_tensor k(1, 1, t, d, 32), v(1, 1, t, d, 0);
  const auto qv = salt::tensor_view<const float>::bhld(q.data(), 1, 2, t, d);
  const auto ov = salt::tensor_view<float>::bhld(out.data(), 1, 2, t, d);
  const auto unchanged = [&] { return std::all_of(out.begin(), out.end(), [](float x) { return x == 7.0f; }); };

  auto bad_group = k.view();
  bad_group.group = 24;
  CHECK(error_of([&] { salt::attention(qv, bad_group, v.view(), ov); }) ==
        "salt::attention: k has 64 features, which groups of 24 do not divide");
  auto bad_scales = k.view();
  bad_scales.scales.features = 3;
  CHECK(error_of([&] { salt::attention(qv, bad_scales, v.view(), ov); }) ==
        "salt::attention: k's scales are (1, 1, 10, 3) but must be (1, 1, 10, 2)");
  quantized_tensor short_v(1, 1, t - 1, d, 0);
  CHECK(error_of([&] { salt::attention(qv, k.view(), short_v.view(), ov); }) ==
        "salt::attention: k has 10 tokens but v has 9");
  quantized_tensor k2(1, 1, t, 2, 0), v2(1, 1, t, 2, 0);
  auto own_scales = salt::tensor_view<float>{k2.scales.data(), 1, 1, 1, 2, 0, 0, 2};
  CHECK(error_of([&] {
          salt::attention(salt::tensor_view<const float>::bhld(q.data(), 1, 1, 1, 2), k2.view(), v2.view(), own_scales);
        }) == "salt::attention: out overlaps an input; attention cannot run in place");
  CHECK(unchanged());

  // quantize: a NaN anywhere is named, and nothing is written.
  std::vector<float> x(static_cast<std::size_t>(t * d), 1.0f);
  x[static_cast<std::size_t>(3 * d + 5)] = std::numeric_limits<float>::quiet_NaN();
  quantized_tensor dst(1, 1, t, d, 32);
  std::fill(dst.values.begin(), dst.values.end(), std::int8_t{9});
  CHECK(error_of([&] { salt::quantize<float>(salt::tensor_view<const float>::bhld(x.data(), 1, 1, t, d), dst.view()); }) ==
        "salt::quantize: x(0, 0, 3, 5) is not finite");
  CHECK(std::all_of(dst.values.begin(), dst.values.end(), [](std::int8_t v) { return v == 9; }));
  CHECK(error_of([&] { salt::quantize<float>(salt::tensor_view<const float>::bhld(x.data(), 1, 1, t - 1, d), dst.view()); }) ==
        "salt::quantize: x is (1, 1, 9, 64) but out is (1, 1, 10, 64)");
}
