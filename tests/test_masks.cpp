// Mask policies' block plans against their own per-pair truth: every allowed pair lies in a planned
// block, blocks marked full are truly full, runs are sorted and disjoint, and leaf masks plan no block
// without an allowed pair. Compositions are checked the same way.
#include <salt/mask.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "catch.hpp"
#include "plan_check.hpp"

namespace {

using idx = salt::index;
using salt::test::check_plan;


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
    }
  }
}

TEST_CASE("masks are values: policies satisfy the concept and compose at compile time", "[mask]") {
  STATIC_REQUIRE(salt::mask_policy<salt::no_mask>);
  STATIC_REQUIRE(salt::mask_policy<salt::causal<>>);
  STATIC_REQUIRE(salt::mask_policy<salt::key_padding>);
  STATIC_REQUIRE(salt::mask_policy<salt::key_mask>);
  STATIC_REQUIRE(salt::mask_policy<decltype(salt::causal{} & salt::key_padding{})>);
  STATIC_REQUIRE(salt::no_mask::is_always_full());
  STATIC_REQUIRE(!decltype(salt::causal{} & salt::no_mask{})::is_always_full());
  STATIC_REQUIRE(decltype(salt::causal{} | salt::no_mask{})::is_always_full());
  STATIC_REQUIRE(sizeof(salt::union_mask<salt::no_mask, salt::causal<>>) == sizeof(salt::causal<>));
  STATIC_REQUIRE(!salt::mask_policy<int>);
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
