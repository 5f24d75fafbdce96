// Local and packed sparse masks: sliding_window (dilated or not), global_tokens and segments, alone and
// composed with each other and with causal / key_padding. Their block plans agree with their per-pair
// truth and cost O(visited blocks); the engine under them matches the fp64 reference; bad parameters
// throw salt::error naming the function.
#include <salt/mask/sliding_window.hpp>
#include <salt/mask/global_tokens.hpp>
#include <salt/mask/segments.hpp>

#include <salt/attention.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <limits>
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
constexpr idx huge = std::numeric_limits<idx>::max();

/// Global tokens for a sequence of L: both ends, the middle, and a run of 24 (three whole 8-key blocks).
std::vector<idx> some_globals(idx L) {
  std::vector<idx> g{0, 3, L / 2, L - 1};
  for (idx t = 16; t < 40; ++t) g.push_back(t);
  std::erase_if(g, [L](idx t) { return t >= L; });
  std::sort(g.begin(), g.end());
  g.erase(std::unique(g.begin(), g.end()), g.end());
  return g;
}

/// Segment ids for L tokens: lengths cycling through 1, 5, 30, 70, 3, 9 (one longer than a block), ids
/// starting below zero and rising by uneven steps.
std::vector<idx> some_segments(idx L) {
  static constexpr idx lengths[] = {1, 5, 30, 70, 3, 9};
  std::vector<idx> ids;
  idx id = -2;
  for (int s = 0; static_cast<idx>(ids.size()) < L; ++s, id += 1 + s % 3)
    for (idx t = 0; t < lengths[s % 6] && static_cast<idx>(ids.size()) < L; ++t) ids.push_back(id);
  return ids;
}

/// Windows that exercise each path of sliding_window::plan: the band (dilation 1), dilated blocks that all
/// hold a multiple, dilations wider than block + tile (the sparse walk), and windows wider than the
/// sequence.
const std::vector<salt::sliding_window>& windows() {
  static const std::vector<salt::sliding_window> w = {
      {0, 0, 1},  {4, 4, 1},   {16, 0, 1},     {0, 9, 1},     {70, 70, 1},     {3, 5, 2},          {10, 10, 3},
      {5, 200, 7}, {100, 100, 30}, {256, 256, 100}, {huge, huge, 1}, {huge, 0, 3}, {300, 300, 130},
  };
  return w;
}

std::string describe(const salt::sliding_window& w) {
  return "sliding_window{" + std::to_string(w.left) + ", " + std::to_string(w.right) + ", " +
         std::to_string(w.dilation) + "}";
}

}  // namespace

TEST_CASE("masks are values: the local masks satisfy the concept and compose", "[sparse][mask]") {
  STATIC_REQUIRE(salt::planned_mask<salt::sliding_window>);
  STATIC_REQUIRE(salt::planned_mask<salt::global_tokens>);
  STATIC_REQUIRE(salt::planned_mask<salt::segments>);
  STATIC_REQUIRE(salt::planned_mask<decltype(salt::sliding_window{} | salt::global_tokens{})>);
  STATIC_REQUIRE(salt::planned_mask<decltype((salt::segments{} & salt::causal{}) | salt::global_tokens{})>);
  STATIC_REQUIRE(!salt::sliding_window::is_always_full());
  STATIC_REQUIRE(!salt::global_tokens::is_always_full());
  STATIC_REQUIRE(!salt::segments::is_always_full());
}

TEST_CASE("global_tokens and segments view lvalues and spans, and stay trivially copyable", "[sparse][mask]") {
  STATIC_REQUIRE(std::is_trivially_copyable_v<salt::global_tokens>);
  STATIC_REQUIRE(std::is_trivially_copyable_v<salt::segments>);
  STATIC_REQUIRE(std::is_aggregate_v<salt::global_tokens>);
  STATIC_REQUIRE(std::is_aggregate_v<salt::segments>);
  // Only ranges of salt::index convert (a temporary of them fails with a sentence: tests/compile_fail).
  STATIC_REQUIRE(!std::is_constructible_v<salt::global_tokens, std::vector<int>&>);
  STATIC_REQUIRE(!std::is_constructible_v<salt::segments, const std::vector<std::int32_t>&>);
  std::vector<idx> tokens{1, 4};
  const std::array<idx, 2> fixed{1, 4};
  const idx plain[] = {1, 4};
  const salt::global_tokens from_vector{tokens}, from_array{fixed}, from_c_array{plain},
      from_span{std::span<const idx>(tokens).first(1)}, nobody{};
  CHECK(from_vector.indices.data() == tokens.data());
  CHECK(from_array.indices.data() == fixed.data());
  CHECK(from_c_array.indices.size() == 2);
  CHECK(from_span.indices.size() == 1);
  CHECK(nobody.indices.empty());
  const salt::global_tokens copied = [&]() -> salt::global_tokens { return {tokens}; }();  // converts like a span
  CHECK(copied.indices.data() == tokens.data());
  const salt::segments packed{tokens};
  CHECK(packed.ids.data() == tokens.data());
  const salt::global_tokens named{.indices = tokens};  // designated initialisers: the masks are aggregates
  const salt::segments named_ids{.ids = fixed};
  CHECK(named.indices.data() == tokens.data());
  CHECK(named_ids.ids.data() == fixed.data());
}

TEST_CASE("sliding_window, global_tokens and segments allow the documented pairs", "[sparse][mask]") {
  const salt::problem_shape square{10, 10, 0, 0}, wide{3, 8, 0, 0};  // wide: query i sits at key i + 5
  const salt::sliding_window longformer{.left = 2, .right = 2};
  CHECK(longformer.allows(5, 3, square));
  CHECK(longformer.allows(5, 7, square));
  CHECK_FALSE(longformer.allows(5, 2, square));
  CHECK_FALSE(longformer.allows(5, 8, square));
  const salt::sliding_window local{.left = 3};
  CHECK(local.allows(0, 5, wide));
  CHECK(local.allows(0, 2, wide));
  CHECK_FALSE(local.allows(0, 6, wide));
  CHECK_FALSE(local.allows(0, 1, wide));
  const salt::sliding_window dilated{.left = 6, .right = 6, .dilation = 3};
  CHECK(dilated.allows(5, 5, square));
  CHECK(dilated.allows(5, 2, square));
  CHECK(dilated.allows(5, 8, square));
  CHECK_FALSE(dilated.allows(5, 4, square));
  CHECK_FALSE(dilated.allows(5, 7, square));

  const std::vector<idx> g{2, 7};
  const salt::global_tokens global{g};
  CHECK(global.allows(2, 9, square));  // a global query sees everything
  CHECK(global.allows(4, 7, square));  // everyone sees a global key
  CHECK_FALSE(global.allows(4, 5, square));

  const std::vector<idx> ids{0, 0, 0, 4, 4, 9, 9, 9, 9, 9};
  const salt::segments packed{ids};
  CHECK(packed.allows(3, 4, square));
  CHECK(packed.allows(9, 5, square));
  CHECK_FALSE(packed.allows(2, 3, square));
}

TEST_CASE("local sparse block plans agree with the per-pair test", "[sparse][plan]") {
  const std::vector<idx> sizes{1, 7, 63, 64, 65, 200};
  for (const idx lq : sizes) {
    for (const idx lk : sizes) {
      const std::vector<idx> lengths{lk / 3};
      const salt::key_padding padding{lengths};
      for (const idx tile : {1, 16, 64}) {
        for (const idx block : {1, 8, 64}) {
          for (const salt::sliding_window& w : windows()) {
            const std::string name = describe(w);
            check_plan(name, w, lq, lk, tile, block, true);
            check_plan(name + " & causal", w & salt::causal{}, lq, lk, tile, block, false);
            check_plan(name + " | key_padding", w | padding, lq, lk, tile, block, false);
            check_plan("causal<top_left> & " + name, salt::causal<salt::causal_alignment::top_left>{} & w, lq, lk,
                       tile, block, false);
          }
        }
      }
    }
  }
  for (const idx L : sizes) {
    const std::vector<idx> g = some_globals(L), ids = some_segments(L), lengths{L / 3}, first{0}, none;
    const salt::global_tokens global{g}, cls{first}, nobody{none};
    const salt::segments packed{ids};
    const salt::key_padding padding{lengths};
    const salt::sliding_window window{.left = 4, .right = 4}, dilated{.left = 10, .right = 10, .dilation = 3};
    for (const idx tile : {1, 16, 64}) {
      for (const idx block : {1, 8, 64}) {
        check_plan("global_tokens", global, L, L, tile, block, true);
        check_plan("global_tokens{0}", cls, L, L, tile, block, true);
        check_plan("global_tokens{}", nobody, L, L, tile, block, true);
        check_plan("segments", packed, L, L, tile, block, true);
        check_plan("window | global (Longformer)", window | global, L, L, tile, block, false);
        check_plan("dilated | global", dilated | global, L, L, tile, block, false);
        check_plan("segments & causal", packed & salt::causal{}, L, L, tile, block, false);
        check_plan("segments & window", packed & window, L, L, tile, block, false);
        check_plan("segments & dilated", packed & dilated, L, L, tile, block, false);
        check_plan("segments | global", packed | global, L, L, tile, block, false);
        check_plan("(window | global) & key_padding", (window | global) & padding, L, L, tile, block, false);
        check_plan("window | global & key_padding", window | global & padding, L, L, tile, block, false);
        check_plan("(global | causal) & segments", (global | salt::causal{}) & packed, L, L, tile, block, false);
      }
    }
  }
}

namespace {

/// Calls f(name, mask) for every local mask and composition, set up for (lq, lk); the spans point into
/// this object. Masks that need Lq == Lk are offered only then.
struct local_zoo {
  idx lq, lk;
  std::vector<idx> lengths, globals, ids;

  local_zoo(idx lq_, idx lk_)
      : lq(lq_), lk(lk_), lengths{lk_ / 2 + 1 > lk_ ? lk_ : lk_ / 2 + 1}, globals(some_globals(lk_)),
        ids(some_segments(lk_)) {}

  template <class F>
  void each(F&& f) const {
    const salt::key_padding padding{lengths};
    const salt::sliding_window longformer{.left = 4, .right = 4}, local{.left = 16}, wide{.left = 70, .right = 70},
        dilated{.left = 3, .right = 5, .dilation = 2}, sparse{.left = 300, .right = 300, .dilation = 130};
    f("sliding_window{4, 4}", longformer);
    f("sliding_window{16, 0}", local);
    f("sliding_window{70, 70}", wide);
    f("sliding_window{3, 5, 2}", dilated);
    f("sliding_window{300, 300, 130}", sparse);
    f("sliding_window{8, 8} & causal", salt::sliding_window{.left = 8, .right = 8} & salt::causal{});
    f("sliding_window{70, 70} & key_padding", wide & padding);
    if (lq != lk) return;
    const salt::global_tokens global{globals};
    const salt::segments packed{ids};
    f("global_tokens", global);
    f("segments", packed);
    f("sliding_window{4, 4} | global_tokens", longformer | global);
    f("sliding_window{70, 70} | global_tokens", wide | global);
    f("sliding_window{3, 5, 2} | global_tokens", dilated | global);
    f("segments & causal", packed & salt::causal{});
    f("(sliding_window{4, 4} | global_tokens) & key_padding", (longformer | global) & padding);
    f("sliding_window{4, 4} | global_tokens & key_padding", longformer | global & padding);
    f("segments & sliding_window{3, 5, 2}", packed & dilated);
    f("segments | global_tokens", packed | global);
  }
};

template <class T>
void check_local_against_reference(idx lq, idx lk, idx d, std::uint64_t seed) {
  random_source rng(seed);
  const salt::row_matrix<T> q = rng.matrix<T>(lq, d), k = rng.matrix<T>(lk, d), v = rng.matrix<T>(lk, d);
  local_zoo(lq, lk).each([&](const std::string& name, const auto& mask) {
    CAPTURE(name, lq, lk, d, sizeof(T));
    check_head(q, k, v, mask);
  });
}

}  // namespace

TEMPLATE_TEST_CASE("local sparse attention matches the fp64 reference", "[sparse][reference]", float, double) {
  struct lengths {
    idx lq, lk;
  };
  const std::vector<lengths> sizes = {{1, 1},  {7, 7},   {65, 65}, {257, 257}, {1000, 1000},
                                      {7, 65}, {65, 7}, {1, 257}, {257, 64},  {1000, 63}};
  std::uint64_t seed = 100;
  for (const idx d : {3, 64})
    for (const lengths& s : sizes)
      if (in_sweep(s.lq, s.lk)) check_local_against_reference<TestType>(s.lq, s.lk, d, seed++);
}

TEMPLATE_TEST_CASE("a tile whose rows see every key is cut into key partitions, merged by LSE", "[sparse][reference]",
                   float, double) {
  // Longformer's global rows see all L keys while every other tile sees a few blocks: the engine cuts their
  // tiles into key partitions (detail/engine_schedule.hpp). A NaN value at a key only global rows see must
  // reach them through the merge, and the result must not depend on the number of threads.
  using T = TestType;
  const idx L = GENERATE(idx{4096}, idx{4133}), d = 16;  // a whole number of tiles, and not
  CAPTURE(L);
  random_source rng(41);
  const salt::row_matrix<T> q = rng.matrix<T>(L, d), k = rng.matrix<T>(L, d);
  salt::row_matrix<T> v = rng.matrix<T>(L, d);
  v(L / 3, 5) = std::numeric_limits<T>::quiet_NaN();
  const std::vector<idx> g{0, 1, 2, L / 2 + 7, L - 1};
  const auto mask = salt::sliding_window{.left = 64, .right = 64} | salt::global_tokens{g};
  const auto layout = salt::detail::row_layout::of(L, 1, 1, salt::detail::tile_shape<T>::query_tile);
  const salt::detail::engine_schedule schedule = salt::detail::schedule_tiles<T>(mask, layout, 1, 1, L, 1);
  REQUIRE(schedule.splits.size() == 3);  // the tiles of 0-2, of L/2 + 7 and of L - 1; none other
  for (const auto& cut : schedule.splits) CHECK(cut.parts > 1);
  check_head<T>(q, k, v, mask);

  const auto run = [&](int threads) {
    salt::row_matrix<T> out(L, d);
    std::vector<T> lse(L);
    salt::attention(salt::tensor_view<const T>::bhld(q.data(), 1, 1, L, d),
                    salt::tensor_view<const T>::bhld(k.data(), 1, 1, L, d),
                    salt::tensor_view<const T>::bhld(v.data(), 1, 1, L, d),
                    salt::tensor_view<T>::bhld(out.data(), 1, 1, L, d), salt::lse_view<T>::bht(lse.data(), 1, L),
                    mask, salt::dot_product{}, {.threads = threads});
    CHECK(std::isnan(out(0, 5)));
    CHECK(std::isfinite(out(0, 4)));
    return std::pair{out, lse};
  };
  const auto one = run(1);
  for (const int threads : {2, 3, 7}) {
    CAPTURE(threads);
    const auto many = run(threads);
    CHECK(std::memcmp(many.first.data(), one.first.data(), sizeof(T) * L * d) == 0);  // NaN included
    CHECK(many.second == one.second);
  }
}

TEST_CASE("local sparse masks run per batch item and head through the multi-head API", "[sparse][reference]") {
  // Two batch items, four query heads over two K/V heads: the shared globals and segment ids apply to each.
  const idx B = 2, H = 4, HKV = 2, L = 130, d = 16;
  random_source rng(7);
  const salt::row_matrix<float> q = rng.matrix<float>(B * H * L, d), k = rng.matrix<float>(B * HKV * L, d),
                                v = rng.matrix<float>(B * HKV * L, d);
  salt::row_matrix<float> out(B * H * L, d);
  const std::vector<idx> g = some_globals(L), ids = some_segments(L), lengths{100, 130};
  const auto mask = (salt::sliding_window{.left = 5, .right = 5} | salt::global_tokens{g} | salt::segments{ids}) &
                    salt::key_padding{lengths};
  salt::attention(salt::tensor_view<const float>::bhld(q.data(), B, H, L, d),
                  salt::tensor_view<const float>::bhld(k.data(), B, HKV, L, d),
                  salt::tensor_view<const float>::bhld(v.data(), B, HKV, L, d),
                  salt::tensor_view<float>::bhld(out.data(), B, H, L, d), mask);
  for (idx b = 0; b < B; ++b) {
    for (idx h = 0; h < H; ++h) {
      CAPTURE(b, h);
      const auto rows = [&](const salt::row_matrix<float>& m, idx heads, idx head) {
        return salt::row_matrix<float>(m.middleRows((b * heads + head) * L, L));
      };
      const salt::problem_shape where{L, L, b, h};
      const auto naive = naive_attention<float>(rows(q, H, h), rows(k, HKV, h / 2), rows(v, HKV, h / 2), mask,
                                                salt::dot_product{}, where);
      const auto ref = naive_attention<double>(rows(q, H, h), rows(k, HKV, h / 2), rows(v, HKV, h / 2), mask,
                                               salt::dot_product{}, where);
      const auto acc = judge<float>(rows(out, H, h), naive.out, ref.out, 1.0);
      CAPTURE(acc.kernel_error, acc.naive_error, acc.floor);
      CHECK(acc.ok());
    }
  }
}

TEST_CASE("bad local mask parameters throw salt::error naming the function; nothing is written", "[sparse][errors]") {
  std::vector<float> buffer(96 * 8, 0.5f), out_buffer(96 * 8, 7.0f);
  const auto view = [&](idx tokens) { return salt::tensor_view<const float>::bhld(buffer.data(), 1, 1, tokens, 8); };
  const auto out = [&](idx tokens) { return salt::tensor_view<float>::bhld(out_buffer.data(), 1, 1, tokens, 8); };
  const std::vector<float> before = out_buffer;
  const auto call = [&](idx lq, idx lk, const auto& mask) {
    return error_of([&] { salt::attention(view(lq), view(lk), view(lk), out(lq), mask); });
  };

  CHECK(call(10, 10, salt::sliding_window{.left = -3}) == "salt::attention: sliding_window left must be >= 0, got -3");
  CHECK(call(10, 10, salt::sliding_window{.left = 2, .right = -1}) ==
        "salt::attention: sliding_window right must be >= 0, got -1");
  CHECK(call(10, 10, salt::sliding_window{.left = 2, .right = 2, .dilation = 0}) ==
        "salt::attention: sliding_window dilation must be >= 1, got 0");

  const std::vector<idx> fine{0, 5}, outside{3, 70}, negative{-1, 3}, unsorted{5, 3}, repeated{3, 3};
  CHECK(call(10, 12, salt::global_tokens{fine}) == "salt::attention: global_tokens needs Lq == Lk, got 10 and 12");
  CHECK(call(64, 64, salt::global_tokens{outside}) == "salt::attention: global token index 70 is outside [0, 64)");
  CHECK(call(64, 64, salt::global_tokens{negative}) == "salt::attention: global token index -1 is outside [0, 64)");
  CHECK(call(64, 64, salt::global_tokens{unsorted}) == "salt::attention: global_tokens indices must be sorted and unique");
  CHECK(call(64, 64, salt::global_tokens{repeated}) == "salt::attention: global_tokens indices must be sorted and unique");

  const std::vector<idx> ids9(9, 0), ids10(10, 0), falling{0, 0, 1, 1, 1, 3, 2, 2, 4, 4};
  CHECK(call(10, 12, salt::segments{ids10}) == "salt::attention: segments needs Lq == Lk, got 10 and 12");
  CHECK(call(10, 10, salt::segments{ids9}) == "salt::attention: segments has 9 ids for 10 tokens");
  CHECK(call(10, 10, salt::segments{falling}) ==
        "salt::attention: segments ids must be non-decreasing, but token 6 has id 2 after 3");

  // Compositions check every part.
  CHECK(call(64, 64, salt::sliding_window{.left = 4, .right = 4} | salt::global_tokens{outside}) ==
        "salt::attention: global token index 70 is outside [0, 64)");
  CHECK(call(10, 10, (salt::segments{ids10} & salt::causal{}) | salt::sliding_window{.left = -3}) ==
        "salt::attention: sliding_window left must be >= 0, got -3");
  CHECK(call(10, 10, salt::segments{ids10} & salt::sliding_window{.left = 1} | salt::global_tokens{fine}) == "");
  CHECK(out_buffer != before);  // the call that passed wrote its output
  out_buffer = before;
  CHECK(call(10, 10, salt::sliding_window{.left = 1, .dilation = -2}) ==
        "salt::attention: sliding_window dilation must be >= 1, got -2");
  CHECK(out_buffer == before);

  // The single-head front door reports through the same checks.
  const salt::row_matrix<double> q(10, 3), k(12, 3), v(12, 2);
  CHECK(error_of([&] { (void)salt::attention(q, k, v, salt::global_tokens{fine}); }) ==
        "salt::attention: global_tokens needs Lq == Lk, got 10 and 12");
  CHECK(error_of([&] { (void)salt::attention(q, k, v, salt::sliding_window{.right = -7}); }) ==
        "salt::attention: sliding_window right must be >= 0, got -7");
}

namespace {

/// Plans one query tile with `runs` runs of storage per list, however long the key axis.
template <class Mask>
std::vector<salt::block_run> plan_of(const Mask& mask, idx q_begin, idx q_end, idx L, idx block, idx runs) {
  const idx lists = salt::plan_lists_v<Mask>;
  std::vector<salt::block_run> storage(static_cast<std::size_t>(lists * runs));
  salt::block_plan plan(storage.data(), runs, lists);
  salt::detail::plan_blocks(mask, salt::block_query{q_begin, q_end, block, salt::problem_shape{L, L, 0, 0}}, plan);
  return {plan.runs().begin(), plan.runs().end()};
}

idx blocks_in(const std::vector<salt::block_run>& runs) {
  idx n = 0;
  for (const salt::block_run& r : runs) n += r.last - r.first;
  return n;
}

}  // namespace

TEST_CASE("local sparse plans cost O(visited blocks), whatever the sequence length", "[sparse][plan][cost]") {
  const idx block = 64, bound = (512 + 64) / 64 + 2;
  SECTION("a 512-key window visits at most (512 + 64) / 64 + 2 blocks") {
    const idx L = 65536;
    for (const idx q0 : {L / 2, L / 2 + 13}) {
      const auto runs = plan_of(salt::sliding_window{.left = 256, .right = 256}, q0, q0 + 64, L, block, L / block + 1);
      CAPTURE(q0);
      CHECK(blocks_in(runs) <= bound);
      CHECK(runs.size() <= 3);  // partial edge, full middle, partial edge
      const auto dilated =
          plan_of(salt::sliding_window{.left = 256, .right = 256, .dilation = 4}, q0, q0 + 64, L, block, L / block + 1);
      CHECK(blocks_in(dilated) <= bound);
    }
  }
  SECTION("a global_tokens plan for a non-global tile lists only the global keys' blocks") {
    const idx L = 65536;
    const std::vector<idx> g{0, 1, 5000, 40000, 65535};
    const auto runs = plan_of(salt::global_tokens{g}, 1000, 1064, L, block, L / block + 1);
    REQUIRE(runs.size() == 4);
    const idx expected[] = {0, 5000 / 64, 40000 / 64, 65535 / 64};
    for (std::size_t r = 0; r < runs.size(); ++r) {
      CAPTURE(r);
      CHECK(runs[r].first == expected[r]);
      CHECK(runs[r].last == expected[r] + 1);
      CHECK_FALSE(runs[r].full);
    }
    // A tile holding a global query visits every block; a tile of global queries sees them whole.
    const auto global_row = plan_of(salt::global_tokens{g}, 39990, 40054, L, block, L / block + 1);
    CHECK(blocks_in(global_row) == L / block);
    const auto all_global = plan_of(salt::global_tokens{g}, 0, 2, L, block, L / block + 1);
    REQUIRE(all_global.size() == 1);
    CHECK(all_global[0].full);
  }
  SECTION("Longformer (window | global) visits the band plus the global blocks") {
    const idx L = 65536;
    const std::vector<idx> g{0, 65535};
    const auto runs =
        plan_of(salt::sliding_window{.left = 256, .right = 256} | salt::global_tokens{g}, L / 2, L / 2 + 64, L, block,
                L / block + 1);
    CHECK(blocks_in(runs) <= bound + 2);
    CHECK(runs.front().first == 0);
    CHECK(runs.back().last == L / block);
  }
  SECTION("on a key axis of 2^40 tokens, with storage for 16 runs, plans stay small and instant") {
    // A plan that looped over all 2^34 key blocks would not finish; one that wrote more runs would overflow.
    const idx L = idx{1} << 40, mid = L / 2 + 5;
    CHECK(blocks_in(plan_of(salt::sliding_window{.left = 256, .right = 256}, mid, mid + 64, L, block, 16)) <= bound);
    CHECK(blocks_in(plan_of(salt::sliding_window{.left = 256, .right = 256, .dilation = 3}, mid, mid + 64, L, block,
                            16)) <= bound);
    // Dilation wider than block + tile: only the blocks the dilated offsets land in.
    CHECK(blocks_in(plan_of(salt::sliding_window{.left = 1000, .right = 1000, .dilation = 500}, mid, mid + 64, L,
                            block, 16)) <= 2 * 5);
    CHECK(blocks_in(plan_of(salt::sliding_window{.left = huge, .right = huge, .dilation = L / 4}, mid, mid + 64, L,
                            block, 16)) <= 2 * 5);
    const std::vector<idx> g{7, L / 3, L - 1};
    CHECK(blocks_in(plan_of(salt::global_tokens{g}, mid, mid + 64, L, block, 16)) == 3);
    CHECK(blocks_in(plan_of(salt::sliding_window{.left = 256, .right = 256} | salt::global_tokens{g}, mid, mid + 64, L,
                            block, 16)) <= bound + 3);
  }
  SECTION("a segments plan visits the tile's own segments only") {
    const idx L = 65536;
    std::vector<idx> ids(static_cast<std::size_t>(L));
    for (idx t = 0; t < L; ++t) ids[static_cast<std::size_t>(t)] = t / 100;  // segments of 100 tokens
    const auto runs = plan_of(salt::segments{ids}, L / 2, L / 2 + 64, L, block, L / block + 1);
    CHECK(blocks_in(runs) <= (200 + 64) / 64 + 2);
  }
}
