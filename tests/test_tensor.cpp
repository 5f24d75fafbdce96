// The multi-head tensor concept: strided (batch, heads, tokens, features) views in either common layout,
// grouped-query attention equal to multi-head attention with K/V heads repeated, the LSE view, and
// results that do not depend on the number of threads, bit for bit.
#include <salt/attention.hpp>

#include <vector>

#include "catch.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;

std::vector<float> random_buffer(std::size_t n, std::uint64_t seed) {
  random_source rng(seed);
  std::vector<float> x(n);
  for (float& e : x) e = static_cast<float>(rng.uniform());
  return x;
}

/// Copies head (b, h) of a view into a matrix.
salt::row_matrix<float> head_matrix(const salt::tensor_view<const float>& t, idx b, idx h) {
  const auto hv = t.head(b, h);
  salt::row_matrix<float> m(hv.rows, hv.cols);
  for (idx r = 0; r < hv.rows; ++r)
    for (idx c = 0; c < hv.cols; ++c) m(r, c) = hv.row(r)[c];
  return m;
}

}  // namespace

TEST_CASE("grouped-query attention equals each head computed alone", "[tensor][gqa]") {
  const idx B = 2, Hq = 6, Hkv = 2, Lq = 70, Lk = 130, d = 32, dv = 24;
  const auto qb = random_buffer(B * Hq * Lq * d, 1), kb = random_buffer(B * Hkv * Lk * d, 2),
             vb = random_buffer(B * Hkv * Lk * dv, 3);
  // q in (B, H, L, D); k and v in (B, L, H, D), as a fused projection leaves them.
  const auto q = salt::tensor_view<const float>::bhld(qb.data(), B, Hq, Lq, d);
  const auto k = salt::tensor_view<const float>::blhd(kb.data(), B, Lk, Hkv, d);
  const auto v = salt::tensor_view<const float>::blhd(vb.data(), B, Lk, Hkv, dv);
  std::vector<float> ob(B * Hq * Lq * dv, -1.0f), lb(B * Hq * Lq, -1.0f);
  const auto out = salt::tensor_view<float>::bhld(ob.data(), B, Hq, Lq, dv);
  const auto lse = salt::lse_view<float>::bht(lb.data(), Hq, Lq);
  const std::vector<idx> lengths{Lk, 77};
  const auto mask = salt::causal{} & salt::key_padding{lengths};
  salt::attention(q, k, v, out, lse, mask);

  for (idx b = 0; b < B; ++b) {
    for (idx h = 0; h < Hq; ++h) {
      CAPTURE(b, h);
      const idx g = h / (Hq / Hkv);
      const salt::row_matrix<float> qh = head_matrix(q, b, h), kh = head_matrix(k, b, g), vh = head_matrix(v, b, g);
      // The single-head call sees batch 0; give it this batch item's length.
      const std::vector<idx> one_length{lengths[static_cast<std::size_t>(b)]};
      const auto alone = salt::attention_with_lse(qh, kh, vh, salt::causal{} & salt::key_padding{one_length});
      const auto got = head_matrix(out, b, h);
      CHECK(got == alone.out);  // same code path, same bits
      for (idx i = 0; i < Lq; ++i) CHECK(lse.head(b, h)[i] == alone.lse(i));
      // and against the fp64 reference
      const auto ref = naive_attention<double>(qh, kh, vh, salt::causal{} & salt::key_padding{one_length});
      const auto naive = naive_attention<float>(qh, kh, vh, salt::causal{} & salt::key_padding{one_length});
      CHECK(judge<float>(got, naive.out, ref.out, 1.0).ok());
    }
  }
}

TEST_CASE("multi-query attention (one K/V head) and batch of one head", "[tensor][gqa]") {
  const idx Hq = 4, L = 65, d = 16;
  const auto qb = random_buffer(Hq * L * d, 4), kb = random_buffer(L * d, 5), vb = random_buffer(L * d, 6);
  const auto q = salt::tensor_view<const float>::bhld(qb.data(), 1, Hq, L, d);
  const auto k = salt::tensor_view<const float>::bhld(kb.data(), 1, 1, L, d);
  const auto v = salt::tensor_view<const float>::bhld(vb.data(), 1, 1, L, d);
  std::vector<float> ob(Hq * L * d);
  salt::attention(q, k, v, salt::tensor_view<float>::bhld(ob.data(), 1, Hq, L, d));
  for (idx h = 0; h < Hq; ++h)
    CHECK(head_matrix(salt::tensor_view<const float>::bhld(ob.data(), 1, Hq, L, d), 0, h) ==
          salt::attention(head_matrix(q, 0, h), head_matrix(k, 0, 0), head_matrix(v, 0, 0)));
}

TEST_CASE("results are identical bit for bit whatever the number of threads", "[tensor][threads]") {
  const idx B = 2, H = 4, L = 300, d = 64;
  const auto qb = random_buffer(B * H * L * d, 7), kb = random_buffer(B * H * L * d, 8), vb = random_buffer(B * H * L * d, 9);
  const auto q = salt::tensor_view<const float>::bhld(qb.data(), B, H, L, d);
  const auto k = salt::tensor_view<const float>::bhld(kb.data(), B, H, L, d);
  const auto v = salt::tensor_view<const float>::bhld(vb.data(), B, H, L, d);
  auto run = [&](int threads) {
    std::vector<float> ob(B * H * L * d), lb(B * H * L);
    salt::attention(q, k, v, salt::tensor_view<float>::bhld(ob.data(), B, H, L, d), salt::lse_view<float>::bht(lb.data(), H, L),
                    salt::causal{}, salt::dot_product{}, salt::run_options{.threads = threads});
    ob.insert(ob.end(), lb.begin(), lb.end());
    return ob;
  };
  const auto one = run(1);
  for (const int threads : {2, 3, 8}) {
    CAPTURE(threads);
    CHECK(run(threads) == one);
  }
}
