// Mask policies' block plans against their own per-pair truth: every allowed pair lies in a planned
// block, blocks marked full are truly full, runs are sorted and disjoint, and leaf masks plan no block
// without an allowed pair. Compositions are checked the same way. query_padding also runs through the
// engine against the fp64 reference, one head and many.
#include <salt/mask.hpp>

#include <salt/attention.hpp>
#include <salt/borrowed_span.hpp>
#include <salt/plan.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "catch.hpp"
#include "checks.hpp"
#include "plan_check.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using salt::test::check_plan;

/// Whether P{r} compiles for an r of type R (a braced aggregate initialisation, as users write it).
template <class P, class R>
concept binds = requires(R&& r) { P{static_cast<R&&>(r)}; };

/// Valid query counts for a sequence of lq queries: none, one, a cut inside a tile, all but one, all.
std::vector<idx> query_lengths(idx lq) {
  std::vector<idx> n{0, 1, lq / 2 + 1, lq - 1, lq};
  std::erase_if(n, [lq](idx x) { return x < 0 || x > lq; });
  return n;
}

}  // namespace

TEST_CASE("block plans agree with the per-pair test", "[mask][plan]") {
  std::vector<std::uint8_t> flags;
  for (const idx lq : {1, 7, 64, 65, 130}) {
    for (const idx lk : {1, 7, 63, 64, 65, 200}) {
      flags.assign(static_cast<std::size_t>(lk), 1);
      for (idx k = 0; k < lk; ++k) flags[static_cast<std::size_t>(k)] = (k * 7 + 3) % 5 != 0 || k > 100;
      const std::vector<idx> lengths{lk / 3};
      const salt::key_padding padding{lengths};
      const salt::key_mask keys{flags};
      for (const idx tile : {1, 16, 64}) {
        for (const idx block : {1, 8, 64}) {
          check_plan("no_mask", salt::no_mask{}, lq, lk, tile, block, true);
          check_plan("causal", salt::causal{}, lq, lk, tile, block, true);
          check_plan("causal top_left", salt::causal<salt::causal_alignment::top_left>{}, lq, lk, tile, block, true);
          check_plan("causal offset 5", salt::causal<>{.offset = 5}, lq, lk, tile, block, true);
          check_plan("causal offset -9", salt::causal<>{.offset = -9}, lq, lk, tile, block, true);
          check_plan("key_padding", padding, lq, lk, tile, block, true);
          check_plan("key_mask", keys, lq, lk, tile, block, true);
          check_plan("causal | key_padding", salt::causal{} | padding, lq, lk, tile, block, false);
          check_plan("causal & key_mask", salt::causal{} & keys, lq, lk, tile, block, false);
          check_plan("(causal{-9} | padding) & keys", (salt::causal<>{.offset = -9} | padding) & keys, lq, lk, tile, block,
                     false);
          check_plan("no_mask & causal", salt::no_mask{} & salt::causal{}, lq, lk, tile, block, true);
        }
      }
      for (const idx valid : query_lengths(lq)) {
        const std::vector<idx> queries{valid};
        const salt::query_padding padded{queries};
        CAPTURE(valid);
        for (const idx tile : {1, 16, 64}) {
          for (const idx block : {1, 8, 64}) {
            check_plan("query_padding", padded, lq, lk, tile, block, true);
            check_plan("key_padding & query_padding", padding & padded, lq, lk, tile, block, false);
            check_plan("causal & query_padding", salt::causal{} & padded, lq, lk, tile, block, false);
            check_plan("query_padding | causal", padded | salt::causal{}, lq, lk, tile, block, false);
          }
        }
      }
    }
  }
}

TEST_CASE("masks are values: policies satisfy the concept and compose at compile time", "[mask]") {
  STATIC_REQUIRE(salt::mask_policy<salt::no_mask>);
  STATIC_REQUIRE(salt::mask_policy<salt::causal<>>);
  STATIC_REQUIRE(salt::mask_policy<salt::key_padding>);
  STATIC_REQUIRE(salt::mask_policy<salt::key_mask>);
  STATIC_REQUIRE(salt::mask_policy<decltype(salt::causal{} & salt::key_padding{})>);
  STATIC_REQUIRE(salt::planned_mask<salt::query_padding>);
  STATIC_REQUIRE(salt::column_mask<salt::query_padding>);
  STATIC_REQUIRE(salt::planned_mask<decltype(salt::key_padding{} & salt::query_padding{})>);
  STATIC_REQUIRE(salt::no_mask::is_always_full());
  STATIC_REQUIRE(!decltype(salt::causal{} & salt::no_mask{})::is_always_full());
  STATIC_REQUIRE(decltype(salt::causal{} | salt::no_mask{})::is_always_full());
  STATIC_REQUIRE(sizeof(salt::union_mask<salt::no_mask, salt::causal<>>) == sizeof(salt::causal<>));
  STATIC_REQUIRE(!salt::mask_policy<int>);
}

TEST_CASE("borrowed_span binds lvalues and spans of its element type, and is a borrowed range", "[mask]") {
  using span = salt::borrowed_span<const idx>;
  STATIC_REQUIRE(std::is_trivially_copyable_v<span>);
  STATIC_REQUIRE(std::ranges::borrowed_range<span>);
  STATIC_REQUIRE(std::ranges::contiguous_range<span>);
  STATIC_REQUIRE(std::is_convertible_v<span, std::span<const idx>>);
  STATIC_REQUIRE(std::is_convertible_v<std::vector<idx>&, span>);
  STATIC_REQUIRE(std::is_convertible_v<const std::array<idx, 3>&, span>);
  STATIC_REQUIRE(std::is_convertible_v<std::span<idx>, span>);
  // Another element type is refused by the constraint; a temporary of the right type fails with a sentence
  // (tests/compile_fail), which a trait cannot see.
  STATIC_REQUIRE(!std::is_convertible_v<std::vector<int>&, span>);
  STATIC_REQUIRE(!std::is_convertible_v<std::vector<std::int32_t>&, span>);
  STATIC_REQUIRE(!std::is_convertible_v<const std::vector<std::uint16_t>&, salt::borrowed_span<const std::uint8_t>>);
  STATIC_REQUIRE(!std::is_convertible_v<const std::vector<idx>&, salt::borrowed_span<idx>>);  // const stays const
  const std::vector<idx> v{1, 2, 3};
  const span s = v, empty{};
  CHECK(s.data() == v.data());
  CHECK(s.size() == 3);
  CHECK(empty.empty());
  const span copy = s;  // the copy constructor, not the converting one
  CHECK(copy.data() == v.data());
}

TEST_CASE("key_padding, key_mask and query_padding are aggregates that view lvalues and spans", "[mask]") {
  STATIC_REQUIRE(std::is_trivially_copyable_v<salt::key_padding>);
  STATIC_REQUIRE(std::is_trivially_copyable_v<salt::key_mask>);
  STATIC_REQUIRE(std::is_trivially_copyable_v<salt::query_padding>);
  STATIC_REQUIRE(std::is_aggregate_v<salt::key_padding>);
  STATIC_REQUIRE(std::is_aggregate_v<salt::key_mask>);
  STATIC_REQUIRE(std::is_aggregate_v<salt::query_padding>);
  // Only ranges of the element type bind (a temporary of them fails with a sentence: tests/compile_fail).
  STATIC_REQUIRE(binds<salt::key_padding, std::vector<idx>&>);
  STATIC_REQUIRE(binds<salt::key_mask, const std::vector<std::uint8_t>&>);
  STATIC_REQUIRE(binds<salt::query_padding, std::span<const idx>>);
  STATIC_REQUIRE(!binds<salt::key_padding, std::vector<int>&>);
  STATIC_REQUIRE(!binds<salt::key_mask, const std::vector<int>&>);
  STATIC_REQUIRE(!binds<salt::query_padding, const std::vector<std::int32_t>&>);

  std::vector<idx> lengths{3, 4};
  const std::array<idx, 2> fixed{3, 4};
  const idx plain[] = {3, 4};
  const std::vector<std::uint8_t> flags{1, 0, 1};
  const salt::key_padding from_vector{lengths}, from_array{fixed}, from_c_array{plain},
      from_span{std::span<const idx>(lengths).first(1)}, nobody{};
  CHECK(from_vector.lengths.data() == lengths.data());
  CHECK(from_array.lengths.data() == fixed.data());
  CHECK(from_c_array.lengths.size() == 2);
  CHECK(from_span.lengths.size() == 1);
  CHECK(nobody.lengths.empty());
  const salt::key_padding named{.lengths = lengths};  // designated initialisers
  const salt::key_mask keys{.valid = flags};
  const salt::query_padding queries{.lengths = fixed};
  CHECK(named.lengths.data() == lengths.data());
  CHECK(keys.valid.data() == flags.data());
  CHECK(queries.lengths.data() == fixed.data());
  const salt::query_padding returned = [&]() -> salt::query_padding { return {lengths}; }();  // converts like a span
  CHECK(returned.lengths.data() == lengths.data());
  const salt::key_mask copied = keys;
  CHECK(copied.valid.data() == flags.data());
}

TEST_CASE("causal alignment and offset", "[mask]") {
  const salt::problem_shape s{3, 5, 0, 0};  // Lq = 3, Lk = 5
  const salt::causal bottom_right{};
  CHECK(bottom_right.allows(0, 2, s));  // query 0 sits at key position 2
  CHECK_FALSE(bottom_right.allows(0, 3, s));
  CHECK(bottom_right.allows(2, 4, s));
  const salt::causal<salt::causal_alignment::top_left> top_left{};
  CHECK(top_left.allows(0, 0, s));
  CHECK_FALSE(top_left.allows(0, 1, s));
  const salt::causal<> strict{.offset = -1};
  CHECK_FALSE(strict.allows(0, 2, s));
  CHECK(strict.allows(0, 1, s));
}

TEST_CASE("query_padding allows a padded query no key", "[mask]") {
  const std::vector<idx> lengths{3, 0};
  const salt::query_padding padded{lengths};
  const salt::problem_shape first{5, 4, 0, 0}, second{5, 4, 1, 0};
  CHECK(padded.allows(2, 3, first));
  CHECK_FALSE(padded.allows(3, 0, first));
  CHECK_FALSE(padded.allows(0, 0, second));
  CHECK(padded.allowed_queries(1, 0, 5, first) == 0b111);
  CHECK(padded.allowed_queries(1, 2, 3, first) == 0b1);  // queries 2, 3, 4: only 2 is valid
  CHECK(padded.allowed_queries(1, 3, 2, first) == 0);
  CHECK(padded.allowed_queries(1, 0, 5, second) == 0);
}

namespace {

/// One head through the engine with query_padding (alone and composed) against the oracle, and the padded
/// rows exactly 0 with LSE -inf even where their queries hold NaN.
template <class T>
void check_query_padding(idx lq, idx lk, idx d, std::uint64_t seed) {
  using salt::test::check_head;
  salt::test::random_source rng(seed);
  salt::row_matrix<T> q = rng.matrix<T>(lq, d);
  const salt::row_matrix<T> k = rng.matrix<T>(lk, d), v = rng.matrix<T>(lk, d);
  const std::vector<idx> keys{lk / 2 + 1 > lk ? lk : lk / 2 + 1};
  const salt::key_padding key_lengths{keys};
  for (const idx valid : query_lengths(lq)) {
    const std::vector<idx> queries{valid};
    const salt::query_padding padded{queries};
    CAPTURE(lq, lk, d, valid, sizeof(T));
    check_head(q, k, v, padded);
    check_head(q, k, v, key_lengths & padded);
    check_head(q, k, v, salt::causal{} & padded);
    check_head(q, k, v, salt::sliding_window{.left = 9, .right = 3} & padded);

    for (idx i = valid; i < lq; ++i) q(i, 0) = std::numeric_limits<T>::quiet_NaN();  // padded rows read nothing
    const auto r = salt::attention_with_lse(q, k, v, key_lengths & padded);
    for (idx i = valid; i < lq; ++i) {
      CAPTURE(i);
      CHECK((r.out.row(i).array() == T(0)).all());
      CHECK(r.lse(i) == -std::numeric_limits<T>::infinity());
    }
    for (idx i = 0; i < valid && i < lq; ++i) CHECK(std::isfinite(r.lse(i)));
    q = rng.matrix<T>(lq, d);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("query_padding matches the fp64 reference; padded rows are 0 with LSE -inf", "[mask][reference]",
                   float, double) {
  std::uint64_t seed = 300;
  for (const idx lq : {1, 7, 63, 65, 257})
    for (const idx lk : {1, 7, 65, 257}) check_query_padding<TestType>(lq, lk, lq == 7 ? 3 : 32, seed++);
}

TEST_CASE("query_padding per batch item through the multi-head API, LSE included", "[mask][reference]") {
  // Three batch items (no valid query, a cut inside the second tile, all valid), two query heads.
  const idx B = 3, H = 2, lq = 130, lk = 65, d = 16;
  salt::test::random_source rng(11);
  const salt::row_matrix<double> q = rng.matrix<double>(B * H * lq, d), k = rng.matrix<double>(B * H * lk, d),
                                 v = rng.matrix<double>(B * H * lk, d);
  salt::row_matrix<double> out(B * H * lq, d);
  salt::column<double> lse(B * H * lq);
  const std::vector<idx> queries{0, 100, lq}, keys{lk, 7, 1};
  const auto mask = salt::key_padding{keys} & salt::query_padding{queries};
  using in_view = salt::tensor_view<const double>;
  salt::attention(in_view::bhld(q.data(), B, H, lq, d), in_view::bhld(k.data(), B, H, lk, d),
                  in_view::bhld(v.data(), B, H, lk, d), salt::tensor_view<double>::bhld(out.data(), B, H, lq, d),
                  salt::lse_view<double>::bht(lse.data(), H, lq), mask);
  for (idx b = 0; b < B; ++b) {
    for (idx h = 0; h < H; ++h) {
      CAPTURE(b, h);
      const auto rows = [&](const auto& m, idx length) {
        return salt::row_matrix<double>(m.middleRows((b * H + h) * length, length));
      };
      const salt::problem_shape where{lq, lk, b, h};
      const auto naive = salt::test::naive_attention<double>(rows(q, lq), rows(k, lk), rows(v, lk), mask,
                                                             salt::dot_product{}, where);
      const auto ref = salt::test::naive_attention<long double>(rows(q, lq), rows(k, lk), rows(v, lk), mask,
                                                                salt::dot_product{}, where);
      const auto acc = salt::test::judge<double>(rows(out, lq), naive.out, ref.out, 1.0);
      CAPTURE(acc.kernel_error, acc.naive_error, acc.floor);
      CHECK(acc.ok());
      const salt::column<double> head_lse = lse.segment((b * H + h) * lq, lq);
      const auto lse_acc = salt::test::judge<double>(head_lse, naive.lse, ref.lse, salt::test::finite_scale(ref.lse));
      CAPTURE(lse_acc.kernel_error, lse_acc.naive_error, lse_acc.floor);
      CHECK(lse_acc.ok());
      for (idx i = queries[static_cast<std::size_t>(b)]; i < lq; ++i) CHECK(head_lse(i) == -INFINITY);
    }
  }
}

TEST_CASE("query_padding plans no block for a padded tile and full blocks inside", "[mask][plan][cost]") {
  const auto count = [](auto scalar, idx lq, idx lk, const std::vector<idx>& valid) {
    using T = decltype(scalar);
    constexpr idx S = salt::detail::tile_shape<T>::query_tile, BK = salt::detail::tile_shape<T>::key_block;
    const idx blocks = (lk + BK - 1) / BK;
    salt::attention_work expected;
    for (const idx n : valid) {
      for (idx q0 = 0; q0 < lq; q0 += S) {
        if (q0 >= n) continue;  // wholly padded: nothing
        const idx nq = std::min(S, lq - q0);
        expected.visited_blocks += blocks;
        expected.full_blocks += q0 + nq <= n ? blocks : 0;
        expected.visited_pairs += nq * lk;
      }
    }
    const auto got = salt::plan_work<T>(salt::query_padding{valid},
                                        salt::problem_dims{static_cast<idx>(valid.size()), 2, 2, lq, lk, 8, 8});
    CAPTURE(lq, lk, sizeof(T));
    CHECK(got.visited_blocks == 2 * expected.visited_blocks);  // two heads
    CHECK(got.full_blocks == 2 * expected.full_blocks);
    CHECK(got.visited_pairs == 2 * expected.visited_pairs);
    return got;
  };
  for (const idx lq : {1, 63, 65, 257, 1000}) {
    for (const idx lk : {1, 65, 300}) {
      const std::vector<idx> valid{0, lq / 3, lq};
      count(float{}, lq, lk, valid);
      count(double{}, lq, lk, valid);
    }
  }
  // Nothing valid: no work at all.
  const std::vector<idx> none{0, 0};
  CHECK(count(float{}, 4096, 4096, none).visited_blocks == 0);
}

TEST_CASE("bad query_padding lengths throw salt::error naming the function", "[mask][errors]") {
  const salt::row_matrix<float> q = salt::row_matrix<float>::Zero(10, 4), k = salt::row_matrix<float>::Zero(12, 4);
  const std::vector<idx> two{3, 4}, above{11}, negative{-1}, fine{10};
  const auto call = [&](const std::vector<idx>& lengths) {
    return salt::test::error_of([&] { (void)salt::attention(q, k, k, salt::query_padding{lengths}); });
  };
  CHECK(call(two) == "salt::attention: query_padding has 2 lengths for a batch of 1");
  CHECK(call(above) == "salt::attention: query_padding length 11 of batch item 0 is outside [0, 10]");
  CHECK(call(negative) == "salt::attention: query_padding length -1 of batch item 0 is outside [0, 10]");
  CHECK(call(fine).empty());
}
