// The exact engine against the fp64 reference: every mask and composition, shapes that are and are not
// multiples of the tiles, Lq != Lk, d and dv from 1 to 128, float and double.
#include <salt/attention.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "catch.hpp"
#include "checks.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;

/// Calls f(name, mask) for every mask the library has, and compositions of them, set up for (lq, lk).
/// The spans the masks point to live in `storage`.
struct mask_zoo {
  std::vector<salt::index> lengths;
  std::vector<std::uint8_t> flags;

  mask_zoo(idx lk, random_source& rng) : lengths{lk / 2 + 1 > lk ? lk : lk / 2 + 1}, flags(static_cast<std::size_t>(lk)) {
    for (auto& f : flags) f = (rng.bits() % 4) != 0;  // three in four keys valid
  }

  template <class F>
  void each(F&& f) const {
    const salt::key_padding padding{lengths};
    const salt::key_mask keys{flags};
    f("no_mask", salt::no_mask{});
    f("causal", salt::causal{});
    f("causal<top_left>", salt::causal<salt::causal_alignment::top_left>{});
    f("causal{offset=-3}", salt::causal<>{.offset = -3});
    f("key_padding", padding);
    f("key_mask", keys);
    f("causal & key_padding", salt::causal{} & padding);
    f("causal<top_left> | key_mask", salt::causal<salt::causal_alignment::top_left>{} | keys);
    f("(causal{-3} | key_padding) & key_mask", (salt::causal<>{.offset = -3} | padding) & keys);
  }
};

template <class T>
void check_against_reference(idx lq, idx lk, idx d, idx dv, std::uint64_t seed) {
  random_source rng(seed);
  const salt::row_matrix<T> q = rng.matrix<T>(lq, d), k = rng.matrix<T>(lk, d), v = rng.matrix<T>(lk, dv);
  mask_zoo(lk, rng).each([&](const std::string& name, const auto& mask) {
    CAPTURE(name, lq, lk, d, dv, sizeof(T));
    check_head(q, k, v, mask);
  });
}

}  // namespace

TEMPLATE_TEST_CASE("attention matches the fp64 reference for every mask", "[attention][reference]", float, double) {
  struct lengths {
    idx lq, lk;
  };
  const std::vector<lengths> sizes = {{1, 1},   {7, 7},   {63, 63},   {64, 64},  {65, 65}, {257, 257},
                                      {1, 257}, {7, 65},  {65, 7},    {63, 257}, {257, 64}, {1000, 1000},
                                      {1000, 63}, {64, 1000}};
  std::uint64_t seed = 1;
  for (const idx d : {1, 3, 64, 128}) {
    for (const lengths& s : sizes) {
      if (s.lq * s.lk >= 1000 * 63 && d == 128) continue;  // the largest shapes at d = 3 and 64 only
      if (!in_sweep(s.lq, s.lk)) continue;
      check_against_reference<TestType>(s.lq, s.lk, d, d, seed++);
    }
  }
}

TEMPLATE_TEST_CASE("value width may differ from key width", "[attention][reference]", float, double) {
  check_against_reference<TestType>(65, 130, 64, 3, 11);
  check_against_reference<TestType>(65, 130, 3, 64, 12);
  check_against_reference<TestType>(100, 100, 16, 128, 13);
  check_against_reference<TestType>(100, 100, 128, 17, 14);
}

TEST_CASE("column-major inputs and row blocks give the same result as row-major ones", "[attention]") {
  random_source rng(5);
  const salt::row_matrix<float> q = rng.matrix<float>(70, 32), k = rng.matrix<float>(90, 32), v = rng.matrix<float>(90, 16);
  const salt::row_matrix<float> expected = salt::attention(q, k, v, salt::causal{});
  const Eigen::MatrixXf qc = q, kc = k, vc = v;  // column-major copies
  CHECK(salt::attention(qc, kc, vc, salt::causal{}) == expected);
  const salt::row_matrix<float> big = rng.matrix<float>(200, 32);
  salt::row_matrix<float> qpad = big;
  qpad.middleRows(10, 70) = q;
  CHECK(salt::attention(qpad.middleRows(10, 70), k, v, salt::causal{}) == expected);
}
