// Block-sparse masks: explicit layouts (dense and CSR), BigBird and the Sparse Transformer's strided and
// fixed patterns. Their block plans against their own per-pair truth, alone and composed; the engine
// against the fp64 reference; BigBird's seeded tables (determinism, committed values, constraints); and the
// errors bad parameters raise.
#include <salt/mask/bigbird.hpp>
#include <salt/mask/block_layout.hpp>
#include <salt/mask/sparse_transformer.hpp>

#include <salt/attention.hpp>
#include <salt/plan.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <ranges>
#include <set>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "plan_check.hpp"
#include "checks.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;

/// A (heads, nb, nb) 0/1 layout: the diagonal, plus each other block with probability about 1 / 4.
std::vector<std::uint8_t> random_layout(idx heads, idx nb, std::uint64_t seed) {
  salt::random_generator rng(seed);
  std::vector<std::uint8_t> flags(static_cast<std::size_t>(heads * nb * nb));
  for (idx h = 0; h < heads; ++h)
    for (idx i = 0; i < nb; ++i)
      for (idx j = 0; j < nb; ++j) flags[static_cast<std::size_t>((h * nb + i) * nb + j)] = i == j || rng.below(4) == 0;
  return flags;
}

idx blocks_for(idx length, idx block) { return (length + block - 1) / block; }

/// Every block-sparse mask of this file, and compositions with causal and key_padding, set up for (lq, lk)
/// and `heads` query heads. BigBird needs Lq == Lk and is left out otherwise. Owns what the masks view.
struct sparse_zoo {
  idx lq, lk, heads;
  std::vector<idx> lengths;
  std::vector<std::uint8_t> flags16, flags64, flags100;
  salt::block_layout_csr csr16;
  salt::bigbird_table bird16, bird64, bird7;

  sparse_zoo(idx lq_, idx lk_, idx heads_ = 1)
      : lq(lq_),
        lk(lk_),
        heads(heads_),
        lengths{lk_ - lk_ / 3},
        flags16(random_layout(heads_, blocks_for(lk_, 16), 16 + lk_)),
        flags64(random_layout(1, blocks_for(lk_, 64), 64 + lk_)),
        flags100(random_layout(heads_, blocks_for(lk_, 100) + 1, 100 + lk_)),  // covers more than lk
        csr16(layout16()),
        bird16(salt::bigbird_random_table(heads_, blocks_for(lk_, 16), 2, 7)),
        bird64(salt::bigbird_random_table(1, blocks_for(lk_, 64), 3, 8)),
        bird7(salt::bigbird_random_table(heads_, blocks_for(lk_, 7), 1, 9)) {}

  salt::block_layout layout16() const { return {16, heads, blocks_for(lk, 16), flags16}; }
  salt::block_layout layout64() const { return {64, 1, blocks_for(lk, 64), flags64}; }
  salt::block_layout layout100() const { return {100, heads, blocks_for(lk, 100) + 1, flags100}; }

  template <class F>
  void each(F&& f) const {
    const salt::key_padding padding{lengths};
    f("block_layout B=16", layout16());
    f("block_layout B=64", layout64());
    f("block_layout B=100", layout100());
    f("block_layout_csr B=16", csr16.mask());
    f("strided 1", salt::strided{.stride = 1});
    f("strided 7", salt::strided{.stride = 7});
    f("strided 100", salt::strided{.stride = 100});
    f("fixed 16/4", salt::fixed{.block = 16, .summary = 4});
    f("fixed 100/10", salt::fixed{.block = 100, .summary = 10});
    f("fixed 5/0", salt::fixed{.block = 5, .summary = 0});
    f("fixed 3/3", salt::fixed{.block = 3, .summary = 3});
    f("block_layout_csr & causal", csr16.mask() & salt::causal{});
    f("block_layout B=100 | key_padding", layout100() | padding);
    f("strided 7 & causal", salt::strided{.stride = 7} & salt::causal{});
    f("fixed 16/4 & causal", salt::fixed{.block = 16, .summary = 4} & salt::causal{});
    f("(fixed 100/10 & causal) & key_padding", (salt::fixed{.block = 100, .summary = 10} & salt::causal{}) & padding);
    if (lq == lk) {
      f("bigbird B=16 r=2", bird16.mask(16));
      f("bigbird B=64 r=3", bird64.mask(64));
      f("bigbird B=7 r=1", bird7.mask(7));
      f("bigbird & key_padding", bird16.mask(16) & padding);
      f("(bigbird | causal) & key_padding", (bird64.mask(64) | salt::causal{}) & padding);
      f("bigbird & strided 100", bird7.mask(7) & salt::strided{.stride = 100});
    }
  }
};


}  // namespace

TEST_CASE("sparse masks satisfy the concept, are trivially copyable and plan themselves", "[sparse][mask]") {
  STATIC_REQUIRE(salt::planned_mask<salt::block_layout>);
  STATIC_REQUIRE(salt::planned_mask<salt::block_layout_csr_view>);
  STATIC_REQUIRE(salt::planned_mask<salt::bigbird>);
  STATIC_REQUIRE(salt::planned_mask<salt::strided>);
  STATIC_REQUIRE(salt::planned_mask<salt::fixed>);
  STATIC_REQUIRE(salt::planned_mask<decltype(salt::bigbird{} & salt::key_padding{})>);
  STATIC_REQUIRE(salt::planned_mask<decltype(salt::strided{} & salt::causal{})>);
  STATIC_REQUIRE(salt::plan_lists_v<decltype(salt::fixed{} | salt::block_layout{})> == 1 + 3 + 4);
  STATIC_REQUIRE(std::is_trivially_copyable_v<salt::block_layout>);
  STATIC_REQUIRE(std::is_trivially_copyable_v<salt::block_layout_csr_view>);
  STATIC_REQUIRE(std::is_trivially_copyable_v<salt::bigbird>);
}

namespace {

/// Whether a temporary T offers a view of its storage (it must not: the view would dangle).
template <class T>
concept entries_of_temporary = requires(T t) { std::move(t).entries(); };
template <class T>
concept lists_of_temporary = requires(T t) { std::move(t).row_offsets(); } || requires(T t) { std::move(t).columns(); };
template <class T>
concept entries_of_lvalue = requires(const T& t) { t.entries(); };

}  // namespace

TEST_CASE("layout masks view tables kept in variables, through designated initialisers too", "[sparse][mask]") {
  // A temporary owner's views are not offered (mask() of one fails with a sentence: tests/compile_fail).
  STATIC_REQUIRE(!entries_of_temporary<salt::bigbird_table>);
  STATIC_REQUIRE(!lists_of_temporary<salt::block_layout_csr>);
  STATIC_REQUIRE(entries_of_lvalue<salt::bigbird_table>);
  STATIC_REQUIRE(std::ranges::borrowed_range<salt::borrowed_span<const std::uint8_t>>);
  STATIC_REQUIRE(std::is_convertible_v<salt::borrowed_span<const idx>, std::span<const idx>>);

  const std::vector<std::uint8_t> flags{1, 0, 1, 1};  // lower triangle of 2 x 2 blocks
  const salt::block_layout lower{.block = 4, .heads = 1, .blocks = 2, .layout = flags};
  CHECK(lower.layout.data() == flags.data());
  CHECK(lower.layout.size() == 4);
  const salt::problem_shape s{8, 8, 0, 0};
  CHECK_FALSE(lower.allows(0, 4, s));
  CHECK(lower.allows(4, 0, s));
  salt::block_layout upper = lower;
  const std::uint8_t upper_flags[] = {1, 1, 0, 1};
  upper.layout = upper_flags;  // a C array binds; so does an explicit span
  CHECK(upper.allows(0, 4, s));
  CHECK(salt::block_layout{4, 1, 2, std::span<const std::uint8_t>(flags)}.allows(4, 4, s));

  const salt::block_layout_csr csr(lower);
  const salt::block_layout_csr_view view = csr.mask();
  CHECK(view.columns.data() == csr.columns().data());
  CHECK(view.row_offsets.size() == 3);
  const salt::bigbird_table table = salt::bigbird_random_table(1, 6, 1, 3);
  const salt::bigbird bird = table.mask(4);
  CHECK(bird.table.data() == table.entries().data());
}

TEST_CASE("block plans of sparse masks agree with the per-pair test", "[sparse][plan]") {
  struct lengths {
    idx lq, lk;
  };
  const std::vector<lengths> sizes = {{1, 1}, {7, 7}, {65, 65}, {257, 257}, {7, 65}, {65, 7}, {100, 257}, {257, 130}};
  for (const lengths& s : sizes) {
    const sparse_zoo zoo(s.lq, s.lk, 2);
    zoo.each([&](const std::string& name, const auto& mask) {
      const bool leaf = name.find('&') == std::string::npos && name.find('|') == std::string::npos;
      for (const idx tile : {1, 16, 64})
        for (const idx block : {1, 8, 64}) {
          if (tile * block == 1 && s.lq * s.lk > 65 * 65) continue;  // the finest grid on small shapes only
          for (const idx head : {0, 1}) check_plan(name, mask, s.lq, s.lk, tile, block, leaf, head);
        }
    });
  }
}

TEST_CASE("block plans hold for many block and stride sizes", "[sparse][plan]") {
  for (const idx L : {1, 2, 5, 31, 64, 100, 129}) {
    for (const idx B : {1, 2, 3, 8, 13, 64, 65, 200}) {
      const auto flags = random_layout(1, blocks_for(L, B), static_cast<std::uint64_t>(L * 1000 + B));
      const salt::block_layout dense{B, 1, blocks_for(L, B), flags};
      const salt::block_layout_csr csr(dense);
      for (const idx r : {0, 1, 4}) {
        const auto table = salt::bigbird_random_table(1, blocks_for(L, B), r, static_cast<std::uint64_t>(B + r));
        for (const idx tile : {1, 7, 32})
          for (const idx block : {1, 4, 64}) check_plan("bigbird", table.mask(B), L, L, tile, block, true);
      }
      for (const idx tile : {1, 7, 32}) {
        for (const idx block : {1, 4, 64}) {
          check_plan("block_layout", dense, L, L, tile, block, true);
          check_plan("block_layout_csr", csr.mask(), L, L, tile, block, true);
          check_plan("strided", salt::strided{.stride = B}, L, L, tile, block, true);
          check_plan("strided, Lq < Lk", salt::strided{.stride = B}, std::max<idx>(L / 3, 1), L, tile, block, true);
          for (const idx c : {idx{0}, idx{1}, B / 2, B}) {
            check_plan("fixed", salt::fixed{.block = B, .summary = c}, L, L, tile, block, true);
            check_plan("fixed, Lq > Lk", salt::fixed{.block = B, .summary = c}, L + 9, L, tile, block, true);
          }
        }
      }
    }
  }
}

TEST_CASE("a huge stride or block is safe", "[sparse][plan]") {
  const idx big = idx{1} << 60;
  check_plan("strided 2^60", salt::strided{.stride = big}, 130, 130, 16, 8, true);
  check_plan("fixed 2^60", salt::fixed{.block = big, .summary = 3}, 130, 130, 16, 8, true);
  check_plan("fixed 2^62, all but one summary", salt::fixed{.block = big * 4, .summary = big * 4 - 1}, 130, 130, 16, 8, true);
  check_plan("strided 2^62 & causal", salt::strided{.stride = big * 4} & salt::causal{}, 130, 130, 16, 8, false);
}

TEST_CASE("plans visit only the blocks their patterns reach", "[sparse][plan]") {
  const idx L = 8192, BK = salt::detail::tile_shape<float>::key_block, S = salt::detail::tile_shape<float>::query_tile;
  const idx tiles = (L + S - 1) / S, key_blocks = L / BK;
  const salt::problem_dims dims{1, 1, 1, L, L, 64, 64};
  const bool aligned = 64 % S == 0;  // query tiles never straddle two 64-token blocks
  // BigBird, B = 64, r = 3: a tile meets at most 2 rows of 3 window + 2 global + 3 random blocks; the tiles of
  // the two global rows see everything.
  const auto table = salt::bigbird_random_table(1, L / 64, 3, 1);
  const salt::attention_work bird = salt::plan_work<float>(table.mask(64), dims);
  CHECK(bird.visited_blocks <= tiles * 2 * 8 + 2 * (64 / S + 2) * key_blocks);
  if (aligned) CHECK(bird.full_blocks == bird.visited_blocks);  // B = 64 lines up with the engine's key blocks
  // A diagonal layout: one or two blocks per tile.
  std::vector<std::uint8_t> diagonal(static_cast<std::size_t>(128 * 128), 0);
  for (idx i = 0; i < 128; ++i) diagonal[static_cast<std::size_t>(i * 128 + i)] = 1;
  const salt::block_layout_csr csr(salt::block_layout{64, 1, 128, diagonal});
  const salt::attention_work d = salt::plan_work<float>(csr.mask(), dims);
  CHECK(d.visited_blocks <= 2 * tiles);
  if (aligned) CHECK(d.full_blocks == d.visited_blocks);
  // Strided, stride 1024: the band (2 * 1024 / BK + 2 blocks) and L / 1024 + 1 stretches of S keys (2 blocks each).
  const salt::attention_work st = salt::plan_work<float>(salt::strided{.stride = 1024}, dims);
  CHECK(st.visited_blocks <= tiles * (2 * 1024 / BK + 2 + 2 * (L / 1024 + 1)));
  // Fixed, l = 512, c = 16: the tile's own block(s) (512 / BK + 1 blocks each) and one block per summary stretch.
  const salt::attention_work fx = salt::plan_work<float>(salt::fixed{.block = 512, .summary = 16}, dims);
  CHECK(fx.visited_blocks <= tiles * (2 * (512 / BK + 1) + L / 512));
  const salt::attention_work dense = salt::plan_work<float>(salt::no_mask{}, dims);
  CHECK(dense.visited_blocks == tiles * key_blocks);
  CHECK(bird.visited_blocks * 4 < dense.visited_blocks);
  CHECK(fx.visited_blocks * 4 < dense.visited_blocks);
}

TEST_CASE("the patterns are the papers' definitions", "[sparse][mask]") {
  const salt::problem_shape s{20, 20, 0, 0};
  auto seen = [&](const auto& mask, idx q) {
    std::vector<idx> keys;
    for (idx k = 0; k < s.lk; ++k)
      if (mask.allows(q, k, s)) keys.push_back(k);
    return keys;
  };
  // Strided, l = 4, with causal: the last 4 keys and every 4th key back from the query.
  CHECK(seen(salt::strided{.stride = 4} & salt::causal{}, 9) == std::vector<idx>{1, 5, 6, 7, 8, 9});
  // Symmetric without causal.
  CHECK(seen(salt::strided{.stride = 4}, 9) == std::vector<idx>{1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 17});
  // Fixed, l = 4, c = 1, with causal: the query's own block so far and the last key of every earlier block.
  CHECK(seen(salt::fixed{.block = 4, .summary = 1} & salt::causal{}, 9) == std::vector<idx>{3, 7, 8, 9});
  CHECK(seen(salt::fixed{.block = 4, .summary = 1}, 9) == std::vector<idx>{3, 7, 8, 9, 10, 11, 15, 19});
  // Decoding: one query at the end of a cache of 20 keys sits at position 19.
  const salt::problem_shape one{1, 20, 0, 0};
  CHECK(salt::strided{.stride = 4}.allows(0, 15, one));
  CHECK_FALSE(salt::strided{.stride = 4}.allows(0, 14, one));
  CHECK(salt::fixed{.block = 4, .summary = 1}.allows(0, 16, one));
}

TEST_CASE("bigbird is the block layout of its pattern", "[sparse][bigbird]") {
  for (const idx L : {1, 7, 16, 40, 64, 100, 257}) {
    for (const idx B : {1, 7, 16}) {
      const idx nb = blocks_for(L, B);
      const auto table = salt::bigbird_random_table(2, nb, 2, 3);
      // Build the layout straight from the definition, then compare pair by pair.
      std::vector<std::uint8_t> flags(static_cast<std::size_t>(2 * nb * nb), 0);
      for (idx h = 0; h < 2; ++h)
        for (idx i = 0; i < nb; ++i)
          for (idx j = 0; j < nb; ++j) {
            bool on = i == 0 || j == 0 || i == nb - 1 || j == nb - 1 || (i - j <= 1 && j - i <= 1);
            if (!on)
              for (idx t = 0; t < 2; ++t) on |= table.at(h, i, t) == j;
            flags[static_cast<std::size_t>((h * nb + i) * nb + j)] = on;
          }
      const salt::block_layout layout{B, 2, nb, flags};
      for (idx h = 0; h < 2; ++h) {
        const salt::problem_shape s{L, L, 0, h};
        idx differ = 0;
        for (idx q = 0; q < L; ++q)
          for (idx k = 0; k < L; ++k) differ += table.mask(B).allows(q, k, s) != layout.allows(q, k, s);
        CAPTURE(L, B, h);
        CHECK(differ == 0);
      }
    }
  }
}

TEST_CASE("a table in transformers' rand_attn layout can be passed as it is", "[sparse][bigbird]") {
  // nb = 8, r = 2, two heads: (2, 6, 2) int32. Head 0 has transformers' quirks: a repeat, entries on the
  // window (its "Missing -3" rows) and on a global block. Head 1 is eval mode's all-zero table.
  const std::vector<std::int32_t> hf = {3, 5,  4, 6,  5, 5,  1, 4,  6, 0,  4, 7,  //
                                        0, 0,  0, 0,  0, 0,  0, 0,  0, 0,  0, 0};
  const salt::bigbird mask{.block = 4, .random = 2, .heads = 2, .table = hf};
  const salt::bigbird plain{.block = 4};  // no random blocks
  for (const idx h : {0, 1}) {
    const salt::problem_shape s{32, 32, 0, h};
    for (idx q = 0; q < 32; ++q) {
      for (idx k = 0; k < 32; ++k) {
        const idx i = q / 4, j = k / 4;
        bool expected = plain.allows(q, k, s);
        if (h == 0 && i >= 1 && i <= 6) expected |= hf[static_cast<std::size_t>((i - 1) * 2)] == j || hf[static_cast<std::size_t>((i - 1) * 2 + 1)] == j;
        CHECK(mask.allows(q, k, s) == expected);
      }
    }
    check_plan("hf table", mask, 32, 32, 8, 4, true, h);
  }
  // The multi-head call accepts it (the table covers both query heads).
  random_source rng(4);
  std::vector<float> q(2 * 32 * 8), out(2 * 32 * 8);
  for (float& x : q) x = static_cast<float>(rng.uniform());
  const auto view = salt::tensor_view<const float>::bhld(q.data(), 1, 2, 32, 8);
  CHECK(error_of([&] { salt::attention(view, view, view, salt::tensor_view<float>::bhld(out.data(), 1, 2, 32, 8), mask); }).empty());
}

TEST_CASE("bigbird random tables: same seed, same table; different seeds differ", "[sparse][bigbird][random]") {
  const auto a = salt::bigbird_random_table(3, 40, 3, 2024), b = salt::bigbird_random_table(3, 40, 3, 2024);
  const auto c = salt::bigbird_random_table(3, 40, 3, 2025);
  CHECK(std::vector<std::int32_t>(a.entries().begin(), a.entries().end()) ==
        std::vector<std::int32_t>(b.entries().begin(), b.entries().end()));
  CHECK(std::vector<std::int32_t>(a.entries().begin(), a.entries().end()) !=
        std::vector<std::int32_t>(c.entries().begin(), c.entries().end()));
  // Heads are drawn independently.
  bool heads_differ = false;
  for (idx i = 1; i <= 38; ++i)
    for (idx t = 0; t < 3; ++t) heads_differ |= a.at(0, i, t) != a.at(1, i, t);
  CHECK(heads_differ);
}

TEST_CASE("bigbird random tables: committed values catch any change in the bits", "[sparse][bigbird][random]") {
  // seed 42, 2 heads, nb = 8, r = 2: (2, 6, 2). Any compiler, standard library or platform must give these.
  const auto table = salt::bigbird_random_table(2, 8, 2, 42);
  // Rows are query blocks 1 .. 6, two random key blocks each.
  const std::vector<std::int32_t> expected = {3, 5,  5, 6,  1, 6,  1, 6,  1, 3,  2, 4,    // head 0
                                              4, 5,  5, 6,  5, 1,  2, 6,  2, 3,  1, 4};  // head 1
  CHECK(std::vector<std::int32_t>(table.entries().begin(), table.entries().end()) == expected);
}

TEST_CASE("bigbird random blocks avoid the window and the global blocks and are distinct", "[sparse][bigbird][random]") {
  for (const idx nb : {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 20, 64}) {
    for (const idx r : {0, 1, 2, 3, 5, 8}) {
      for (const std::uint64_t seed : {1u, 2u, 3u}) {
        const auto table = salt::bigbird_random_table(2, nb, r, seed);
        REQUIRE(table.entries().size() == static_cast<std::size_t>(2 * std::max<idx>(nb - 2, 0) * r));
        for (idx h = 0; h < 2; ++h) {
          for (idx i = 1; i <= nb - 2; ++i) {
            CAPTURE(nb, r, seed, h, i);
            // Candidates: 1 .. nb - 2 outside {i - 1, i, i + 1}.
            std::set<idx> candidates;
            for (idx j = 1; j <= nb - 2; ++j)
              if (j < i - 1 || j > i + 1) candidates.insert(j);
            std::set<idx> drawn;
            idx unused = 0;
            for (idx t = 0; t < r; ++t) {
              const idx j = table.at(h, i, t);
              if (j == -1) {
                ++unused;
                continue;
              }
              CHECK(candidates.count(j) == 1);  // neither window nor global
              CHECK(drawn.insert(j).second);    // distinct
            }
            // A row takes r candidates, or all of them when there are fewer.
            CHECK(static_cast<idx>(drawn.size()) == std::min<idx>(r, static_cast<idx>(candidates.size())));
            CHECK(unused == r - static_cast<idx>(drawn.size()));
          }
        }
      }
    }
  }
}

TEST_CASE("bigbird random blocks are spread over all candidates", "[sparse][bigbird][random]") {
  // 3000 rows of nb = 12: each of the 7 candidates of a middle row should come up about 3000 * 2 / 7 times.
  const auto table = salt::bigbird_random_table(300, 12, 2, 11);
  std::vector<idx> count(12, 0);
  for (idx h = 0; h < 300; ++h)
    for (idx t = 0; t < 2; ++t) ++count[static_cast<std::size_t>(table.at(h, 5, t))];
  for (const idx j : {1, 2, 3, 7, 8, 9, 10}) {
    CAPTURE(j);
    CHECK(count[static_cast<std::size_t>(j)] > 60);
    CHECK(count[static_cast<std::size_t>(j)] < 120);
  }
}

namespace {

template <class T>
void check_against_reference(idx lq, idx lk, idx d, std::uint64_t seed, bool all_masks) {
  random_source rng(seed);
  const salt::row_matrix<T> q = rng.matrix<T>(lq, d), k = rng.matrix<T>(lk, d), v = rng.matrix<T>(lk, d);
  const sparse_zoo zoo(lq, lk);
  idx n = 0;
  zoo.each([&](const std::string& name, const auto& mask) {
    if (!all_masks && n++ % 3 != 0) return;  // the largest shapes: a third of the masks
    CAPTURE(name, lq, lk, d, sizeof(T));
    check_head(q, k, v, mask);
  });
}

}  // namespace

TEMPLATE_TEST_CASE("attention with sparse masks matches the fp64 reference", "[sparse][attention][reference]", float,
                   double) {
  struct lengths {
    idx lq, lk;
  };
  const std::vector<lengths> sizes = {{1, 1}, {7, 7}, {65, 65}, {257, 257}, {1000, 1000}, {7, 65}, {65, 257}, {257, 65}};
  std::uint64_t seed = 100;
  for (const idx d : {3, 64})
    for (const lengths& s : sizes)
      if (in_sweep(s.lq, s.lk)) check_against_reference<TestType>(s.lq, s.lk, d, seed++, s.lq * s.lk < 1000 * 1000);
}

TEMPLATE_TEST_CASE("per-head layouts and tables follow the query head, with grouped K/V", "[sparse][attention][reference]",
                   float, double) {
  using T = TestType;
  const idx heads = 4, kv_heads = 2, L = 300, d = 16;
  random_source rng(77);
  const salt::row_matrix<T> q = rng.matrix<T>(heads * L, d), k = rng.matrix<T>(kv_heads * L, d),
                            v = rng.matrix<T>(kv_heads * L, d);
  const auto flags = random_layout(heads, blocks_for(L, 32), 5);
  const salt::block_layout_csr csr(salt::block_layout{32, heads, blocks_for(L, 32), flags});
  const auto table = salt::bigbird_random_table(heads, blocks_for(L, 32), 2, 6);
  const auto run = [&](const std::string& name, const auto& mask) {
    salt::row_matrix<T> out(heads * L, d);
    salt::attention(salt::tensor_view<const T>::bhld(q.data(), 1, heads, L, d),
                    salt::tensor_view<const T>::bhld(k.data(), 1, kv_heads, L, d),
                    salt::tensor_view<const T>::bhld(v.data(), 1, kv_heads, L, d),
                    salt::tensor_view<T>::bhld(out.data(), 1, heads, L, d), mask);
    for (idx h = 0; h < heads; ++h) {
      CAPTURE(name, h);
      const salt::row_matrix<T> qh = q.middleRows(h * L, L), kh = k.middleRows(h / 2 * L, L), vh = v.middleRows(h / 2 * L, L);
      const salt::problem_shape where{L, L, 0, h};
      const auto naive = naive_attention<T>(qh, kh, vh, mask, salt::dot_product{}, where);
      const auto ref = naive_attention<oracle_t<T>>(qh, kh, vh, mask, salt::dot_product{}, where);
      const salt::row_matrix<T> oh = out.middleRows(h * L, L);
      const auto acc = judge<T>(oh, naive.out, ref.out, finite_scale(vh));
      CAPTURE(acc.kernel_error, acc.naive_error, acc.floor);
      CHECK(acc.ok());
    }
  };
  run("block_layout per head", salt::block_layout{32, heads, blocks_for(L, 32), flags});
  run("block_layout_csr per head & causal", csr.mask() & salt::causal{});
  run("bigbird per head", table.mask(32));
}

TEST_CASE("bad parameters of sparse masks throw salt::error with exact messages", "[sparse][errors]") {
  std::vector<float> buffer(2 * 200 * 8, 0.5f), out_buffer(2 * 200 * 8, 7.0f);
  const auto in = [&](idx heads, idx tokens) { return salt::tensor_view<const float>::bhld(buffer.data(), 1, heads, tokens, 8); };
  const auto out = [&](idx heads, idx tokens) { return salt::tensor_view<float>::bhld(out_buffer.data(), 1, heads, tokens, 8); };
  const auto call = [&](idx heads, idx lq, idx lk, const auto& mask) {
    return error_of([&] { salt::attention(in(heads, lq), in(heads, lk), in(heads, lk), out(heads, lq), mask); });
  };
  std::vector<float> scratch(out_buffer.size());
  const auto runs = [&](idx heads, idx lq, idx lk, const auto& mask) {  // a call that must succeed
    return error_of([&] {
      salt::attention(in(heads, lq), in(heads, lk), in(heads, lk),
                      salt::tensor_view<float>::bhld(scratch.data(), 1, heads, lq, 8), mask);
    }).empty();
  };
  const std::vector<float> before = out_buffer;
  const std::vector<std::uint8_t> flags(8, 1);  // (2, 2, 2)

  // block_layout
  CHECK(call(1, 100, 100, salt::block_layout{0, 2, 2, flags}) ==
        "salt::attention: block_layout block size must be positive, got 0");
  CHECK(call(2, 200, 200, salt::block_layout{64, 2, 2, flags}) == "salt::attention: block_layout covers 128 tokens but Lk is 200");
  CHECK(call(2, 100, 200, salt::block_layout{64, 2, 2, flags}) == "salt::attention: block_layout covers 128 tokens but Lk is 200");
  CHECK(call(1, 100, 100, salt::block_layout{64, 1, 2, flags}) ==
        "salt::attention: block_layout has 8 flags but heads * blocks * blocks = 1 * 2 * 2 = 4");
  CHECK(call(1, 100, 100, salt::block_layout{64, 0, 2, flags}) == "salt::attention: block_layout heads must be positive, got 0");
  const std::vector<std::uint8_t> three(12, 1);
  CHECK(call(2, 100, 100, salt::block_layout{64, 3, 2, three}) ==
        "salt::attention: block_layout has 3 heads, neither 1 nor the 2 query heads");
  CHECK(runs(2, 100, 100, salt::block_layout{64, 2, 2, flags}));

  // block_layout_csr: the owning builder and the view
  CHECK(error_of([&] { salt::block_layout_csr(salt::block_layout{0, 1, 2, flags}); }) ==
        "salt::block_layout_csr: block_layout block size must be positive, got 0");
  CHECK(error_of([&] { salt::block_layout_csr(salt::block_layout{4, 1, 3, flags}); }) ==
        "salt::block_layout_csr: block_layout has 8 flags but heads * blocks * blocks = 1 * 3 * 3 = 9");
  CHECK(error_of([&] { salt::block_layout_csr(64, 1, 2, {0, 1}, {0}); }) ==
        "salt::block_layout_csr: block_layout_csr has 2 row offsets but heads * blocks + 1 = 3");
  CHECK(error_of([&] { salt::block_layout_csr(64, 1, 2, {0, 1, 3}, {0, 1}); }) ==
        "salt::block_layout_csr: block_layout_csr row offsets end at 3 but there are 2 columns");
  CHECK(error_of([&] { salt::block_layout_csr(64, 1, 2, {1, 1, 2}, {0, 1}); }) ==
        "salt::block_layout_csr: block_layout_csr row offsets must start at 0, got 1");
  CHECK(error_of([&] { salt::block_layout_csr(64, 1, 2, {0, 2, 1}, {0}); }) ==
        "salt::block_layout_csr: block_layout_csr row offsets decrease at row 1 of head 0");
  CHECK(error_of([&] { salt::block_layout_csr(64, 1, 2, {0, 1, 2}, {0, 2}); }) ==
        "salt::block_layout_csr: block_layout_csr column 2 in row 1 of head 0 is outside [0, 2)");
  CHECK(error_of([&] { salt::block_layout_csr(64, 1, 2, {0, 2, 2}, {1, 0}); }) ==
        "salt::block_layout_csr: block_layout_csr columns of row 0 of head 0 are not strictly increasing");
  // Sizes whose products (flags, tokens covered) would overflow are refused before anything multiplies them.
  constexpr idx huge = std::numeric_limits<idx>::max();
  CHECK(error_of([&] { salt::block_layout_csr(1, 2, huge, {0}, {}); }) ==
        "salt::block_layout_csr: block_layout_csr block count must be below 2^31, got 9223372036854775807");
  CHECK(error_of([&] { salt::block_layout_csr(salt::block_layout{1, idx{1} << 30, idx{1} << 20, flags}); }) ==
        "salt::block_layout_csr: block_layout has too many heads * blocks^2 (1073741824 * 1048576^2)");
  CHECK(error_of([&] { salt::block_layout_csr(salt::block_layout{1, idx{1} << 40, 0, flags}); }) ==
        "salt::block_layout_csr: block_layout heads must be below 2^31, got 1099511627776");
  CHECK(error_of([&] { salt::block_layout_csr(huge, 1, 2, {0, 1, 2}, {0, 1}); }) ==
        "salt::block_layout_csr: block_layout_csr covers too many tokens (2 blocks of 9223372036854775807)");
  const salt::block_layout_csr csr(64, 1, 2, {0, 1, 2}, {0, 1});
  CHECK(call(1, 200, 200, csr.mask()) == "salt::attention: block_layout_csr covers 128 tokens but Lk is 200");
  CHECK(runs(1, 128, 128, csr.mask() & salt::causal{}));

  // bigbird
  const auto table = salt::bigbird_random_table(2, 4, 1, 1);  // (2, 2, 1)
  CHECK(call(1, 100, 100, salt::bigbird{.block = 0}) == "salt::attention: bigbird block size must be positive, got 0");
  CHECK(call(1, 100, 100, salt::bigbird{.block = 16, .random = -1}) ==
        "salt::attention: bigbird random blocks per row must be in [0, 2^31), got -1");
  CHECK(call(1, 100, 120, salt::bigbird{.block = 16}) == "salt::attention: bigbird needs Lq == Lk, got 100 and 120");
  CHECK(call(2, 100, 100, table.mask(16)) ==
        "salt::attention: bigbird table has 4 entries but heads * (blocks - 2) * random = 2 * 5 * 1 = 10 (L = 100 makes 7 "
        "blocks of 16)");
  const std::vector<std::int32_t> bad = {1, 9};
  CHECK(call(1, 64, 64, salt::bigbird{.block = 16, .random = 1, .table = bad}) ==
        "salt::attention: bigbird random block 9 of head 0, query block 2 is outside [0, 4) (use -1 for none)");
  CHECK(call(3, 64, 64, table.mask(16)) == "salt::attention: bigbird table has 2 heads, neither 1 nor the 3 query heads");
  CHECK(runs(2, 64, 64, table.mask(16)));
  const std::vector<idx> lengths{61};
  CHECK(call(1, 61, 61, salt::key_padding{lengths} & table.mask(16)) ==
        "salt::attention: bigbird table has 2 heads, neither 1 nor the 1 query heads");
  CHECK(error_of([&] { (void)salt::bigbird_random_table(0, 8, 2, 1); }) ==
        "salt::bigbird_random_table: heads must be in [1, 2^31), got 0");
  CHECK(error_of([&] { (void)salt::bigbird_random_table(1, -1, 2, 1); }) ==
        "salt::bigbird_random_table: blocks must be in [0, 2^31), got -1");
  CHECK(error_of([&] { (void)salt::bigbird_random_table(1, 8, -2, 1); }) ==
        "salt::bigbird_random_table: random blocks per row must be >= 0, got -2");
  CHECK(error_of([&] { salt::bigbird_table(1, 4, 1, {1, 2, 3}); }) ==
        "salt::bigbird_table: 3 entries but heads * (blocks - 2) * random = 1 * 2 * 1 = 2");
  CHECK(error_of([&] { salt::bigbird_table(1, 4, 1, {1, 4}); }) ==
        "salt::bigbird_table: random block 4 is outside [0, 4) (use -1 for none)");

  // Sparse Transformer patterns
  CHECK(call(1, 100, 100, salt::strided{.stride = 0}) == "salt::attention: strided stride must be in [1, 2^40], got 0");
  CHECK(call(1, 100, 100, salt::fixed{.block = 0, .summary = 0}) == "salt::attention: fixed block must be in [1, 2^40], got 0");
  CHECK(call(1, 100, 100, salt::fixed{.block = idx{1} << 41, .summary = 0}) ==
        "salt::attention: fixed block must be in [1, 2^40], got 2199023255552");
  CHECK(call(1, 100, 100, salt::fixed{.block = 8, .summary = 9}) ==
        "salt::attention: fixed summary must be in [0, block], got 9 for block 8");
  CHECK(call(1, 100, 100, salt::fixed{.block = 8, .summary = -1}) ==
        "salt::attention: fixed summary must be in [0, block], got -1 for block 8");
  CHECK(call(1, 100, 100, salt::strided{.stride = -3} & salt::causal{}) ==
        "salt::attention: strided stride must be in [1, 2^40], got -3");
  CHECK(out_buffer == before);
}
