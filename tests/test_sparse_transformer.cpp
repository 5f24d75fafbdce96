// The Sparse Transformer's causal patterns run as two engine passes merged by their LSE
// (detail/sparse_transformer_passes.hpp): strided & causal as a band plus one lattice "head" per residue,
// fixed & causal as the own blocks plus the gathered summaries of earlier blocks. Checked against the fp64
// oracle of the same mask object with the accuracy criterion, in both orders of `&`, with several heads and
// GQA, for any thread count (same bits), with NaN values reaching only the rows that see them; shapes the
// passes do not take (Lq != Lk, a shifted diagonal, one period) go through the engine's single pass.
#include <salt/attention.hpp>
#include <salt/plan.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "catch.hpp"
#include "checks.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;

template <class T, class Mask>
void check_pattern(const std::string& name, const Mask& mask, idx lq, idx lk) {
  CAPTURE(name, lq, lk);
  random_source rng(static_cast<std::uint64_t>(lq * 1009 + lk));
  check_head<T>(rng.matrix<T>(lq, 24), rng.matrix<T>(lk, 24), rng.matrix<T>(lk, 20), mask);
}

template <class M>
bool same_bits(const M& a, const M& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), sizeof(typename M::Scalar) * static_cast<std::size_t>(a.size())) == 0;
}

}  // namespace

TEMPLATE_TEST_CASE("strided & causal and fixed & causal as passes match the oracle", "[sparse_transformer]", float,
                   double) {
  using T = TestType;
  for (const idx L : {2, 7, 63, 65, 130, 257, 1000}) {
    if (!in_sweep(L, L)) continue;
    for (const idx s : {1, 2, 7, 13, 64, 100}) {
      check_pattern<T>("strided & causal", salt::strided{.stride = s} & salt::causal{}, L, L);
      check_pattern<T>("causal & strided", salt::causal{} & salt::strided{.stride = s}, L, L);
    }
    for (const auto& [l, c] : {std::pair<idx, idx>{2, 1}, {16, 3}, {5, 2}, {64, 8}, {100, 99}, {33, 33}, {9, 0}}) {
      check_pattern<T>("fixed & causal", salt::fixed{.block = l, .summary = c} & salt::causal{}, L, L);
      check_pattern<T>("causal & fixed", salt::causal{} & salt::fixed{.block = l, .summary = c}, L, L);
    }
  }
}

TEMPLATE_TEST_CASE("shapes the passes do not take go through the single pass, still exact", "[sparse_transformer]",
                   float, double) {
  using T = TestType;
  check_pattern<T>("strided, Lq < Lk", salt::strided{.stride = 9} & salt::causal{}, 70, 200);
  check_pattern<T>("fixed, Lq > Lk", salt::fixed{.block = 16, .summary = 4} & salt::causal{}, 150, 90);
  check_pattern<T>("strided, shifted diagonal", salt::strided{.stride = 9} & salt::causal<>{.offset = -1}, 130, 130);
  check_pattern<T>("strided, top-left", salt::strided{.stride = 9} & salt::causal<salt::causal_alignment::top_left>{},
                   130, 130);
}

TEST_CASE("passes over several heads with GQA: each head as alone, same bits for any thread count",
          "[sparse_transformer]") {
  const idx B = 2, Hq = 4, Hkv = 2, L = 300, d = 16, dv = 12;
  random_source rng(11);
  const salt::row_matrix<float> q = rng.matrix<float>(B * Hq * L, d), k = rng.matrix<float>(B * Hkv * L, d),
                                v = rng.matrix<float>(B * Hkv * L, dv);
  using view = salt::tensor_view<const float>;
  const auto mask = salt::strided{.stride = 17} & salt::causal{};
  auto run = [&](int threads) {
    salt::row_matrix<float> out(B * Hq * L, dv), lse(B * Hq, L);
    salt::attention<float>(view::bhld(q.data(), B, Hq, L, d), view::bhld(k.data(), B, Hkv, L, d),
                           view::bhld(v.data(), B, Hkv, L, dv), salt::tensor_view<float>::bhld(out.data(), B, Hq, L, dv),
                           salt::lse_view<float>::bht(lse.data(), Hq, L), mask, salt::dot_product{}, {.threads = threads});
    return std::pair{out, lse};
  };
  const auto [one_out, one_lse] = run(1);
  const auto [two_out, two_lse] = run(2);
  CHECK(same_bits(one_out, two_out));
  CHECK(same_bits(one_lse, two_lse));
  for (idx b = 0; b < B; ++b)
    for (idx h = 0; h < Hq; ++h) {
      CAPTURE(b, h);
      const salt::row_matrix<float> qh = q.middleRows((b * Hq + h) * L, L);
      const salt::row_matrix<float> kh = k.middleRows((b * Hkv + h / 2) * L, L), vh = v.middleRows((b * Hkv + h / 2) * L, L);
      const auto alone = salt::attention_with_lse(qh, kh, vh, mask);
      CHECK(same_bits(alone.out, salt::row_matrix<float>(one_out.middleRows((b * Hq + h) * L, L))));
      CHECK(same_bits(salt::row_matrix<float>(alone.lse.transpose()), salt::row_matrix<float>(one_lse.row(b * Hq + h))));
    }
}

TEST_CASE("a NaN value reaches only the rows whose pattern holds its key", "[sparse_transformer]") {
  const idx L = 400, bad = 150;
  random_source rng(5);
  const salt::row_matrix<float> q = rng.matrix<float>(L, 16), k = rng.matrix<float>(L, 16);
  salt::row_matrix<float> v = rng.matrix<float>(L, 8);
  v(bad, 3) = std::numeric_limits<float>::quiet_NaN();
  const salt::problem_shape s{L, L, 0, 0};
  auto check = [&](const auto& mask, const std::string& name) {
    CAPTURE(name);
    const auto out = salt::attention(q, k, v, mask);
    for (idx i = 0; i < L; ++i) {
      CAPTURE(i);
      const bool sees = mask.allows(i, bad, s);
      CHECK(std::isnan(out(i, 3)) == sees);
      for (idx c = 0; c < 8; ++c)
        if (c != 3) CHECK(std::isfinite(out(i, c)));
    }
  };
  check(salt::strided{.stride = 20} & salt::causal{}, "strided");
  check(salt::fixed{.block = 32, .summary = 5} & salt::causal{}, "fixed");
}

TEST_CASE("plan_work counts the passes: close to the allowed pairs, far below the single pass", "[sparse_transformer]") {
  const idx L = 4096, s = 64, c = 8;
  const salt::problem_dims dims{1, 2, 2, L, L, 64, 64};
  double strided_pairs = 0, fixed_pairs = 0;
  for (idx p = 0; p < L; ++p) {
    strided_pairs += static_cast<double>(std::min(p + 1, s) + p / s);
    fixed_pairs += static_cast<double>(p % s + 1 + c * (p / s));
  }
  const auto strided = salt::plan_work<float>(salt::strided{.stride = s} & salt::causal{}, dims);
  const auto fixed = salt::plan_work<float>(salt::causal{} & salt::fixed{.block = s, .summary = c}, dims);
  CAPTURE(strided.visited_pairs, strided_pairs, fixed.visited_pairs, fixed_pairs);
  CHECK(static_cast<double>(strided.visited_pairs) >= 2 * strided_pairs);  // two heads
  CHECK(static_cast<double>(strided.visited_pairs) <= 2 * 3 * strided_pairs);  // 64-key blocks over a band of 64
  CHECK(static_cast<double>(fixed.visited_pairs) >= 2 * fixed_pairs);
  CHECK(static_cast<double>(fixed.visited_pairs) <= 2 * 3 * fixed_pairs);
  // The single pass over the pattern's blocks (a shifted diagonal keeps it) visits whole 64-key blocks.
  const auto single = salt::plan_work<float>(salt::strided{.stride = s} & salt::causal<salt::causal_alignment::top_left>{}, dims);
  CHECK(single.visited_pairs > 4 * strided.visited_pairs);
}
