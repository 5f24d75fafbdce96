// Score policies (scaled dot product with any scale, bias table, ALiBi, soft-capping, elementwise
// functions, sums) through the engine against the fp64 reference that applies the same policy objects.
#include <salt/attention.hpp>

#include <array>
#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "catch.hpp"
#include "checks.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;

template <class T, class Mask, class Score>
void check_scores(const std::string& name, idx lq, idx lk, idx d, const Mask& mask, const Score& score,
                  std::uint64_t seed, double input_scale = 1.0) {
  random_source rng(seed);
  const salt::row_matrix<T> q = rng.matrix<T>(lq, d, input_scale), k = rng.matrix<T>(lk, d, input_scale),
                            v = rng.matrix<T>(lk, d);
  CAPTURE(name, lq, lk, d, sizeof(T));
  check_head(q, k, v, mask, score);
}

}  // namespace

TEMPLATE_TEST_CASE("score policies match the fp64 reference", "[score][reference]", float, double) {
  using T = TestType;
  std::uint64_t seed = 100;
  for (const idx lq : {1, 63, 65, 200}) {
    for (const idx lk : {1, 64, 65, 300}) {
      const salt::row_matrix<T> table = random_source(seed).matrix<T>(lq, lk, 3.0);
      const std::vector<double> slopes{0.5, 0.25};
      const auto bias = salt::bias_table<T>::shared(table);
      const salt::alibi al{slopes};
      check_scores<T>("dot scale 0.7", lq, lk, 64, salt::no_mask{}, salt::dot_product{.scale = 0.7}, seed++);
      check_scores<T>("dot scale 0", lq, lk, 64, salt::causal{}, salt::dot_product{.scale = 0.0}, seed++);
      check_scores<T>("dot + bias", lq, lk, 64, salt::no_mask{}, salt::dot_product{} + bias, seed++);
      check_scores<T>("bias alone", lq, lk, 8, salt::causal{}, bias, seed++);
      check_scores<T>("dot + alibi, causal", lq, lk, 64, salt::causal{}, salt::dot_product{} + al, seed++);
      check_scores<T>("alibi + dot", lq, lk, 3, salt::no_mask{}, al + salt::dot_product{}, seed++);
      check_scores<T>("softcap(dot)", lq, lk, 64, salt::causal{}, salt::softcap{5.0}, seed++, 4.0);
      check_scores<T>("softcap(dot + alibi)", lq, lk, 64, salt::no_mask{},
                      salt::softcap<salt::score_sum<salt::dot_product, salt::alibi>>{3.0, salt::dot_product{} + al},
                      seed++, 4.0);
    }
  }
}

namespace {

/// A T5/ALiBi-like relative-position bias as one function: s - slope[h] * |q + shift - k|, with q placed on
/// the key axis bottom-right (shift = Lk - Lq). Computed in the logit's own type, as users should.
struct relative_bias {
  const double* slopes = nullptr;  // (heads)
  idx shift = 0;
  template <class S>
  S operator()(S s, idx, idx h, idx q, idx k) const noexcept {
    const idx distance = q + shift > k ? q + shift - k : k - q - shift;
    return s - static_cast<S>(slopes[h]) * static_cast<S>(distance);
  }
};

}  // namespace

TEMPLATE_TEST_CASE("elementwise_score matches the fp64 reference", "[score][reference]", float, double) {
  using T = TestType;
  std::uint64_t seed = 500;
  const std::vector<double> slopes{0.125, 0.5};
  for (const idx lq : {1, 7, 63, 65, 257}) {
    for (const idx lk : {1, 7, 65, 257}) {
      const salt::row_matrix<T> table = random_source(seed).matrix<T>(lq, lk, 3.0);
      const auto bias = salt::bias_table<T>::shared(table);
      const salt::alibi al{slopes};
      const salt::elementwise_score relative{relative_bias{slopes.data(), lk - lq}};
      const auto cap = salt::elementwise_score{
          [](auto s, idx, idx, idx, idx) { return decltype(s)(5) * std::tanh(s / decltype(s)(5)); }};
      // f may drop pairs itself, as FlexAttention's score_mod does with -inf; a row left with none is 0.
      const auto sparse = salt::elementwise_score{[](auto s, idx, idx, idx q, idx k) {
        return (q + 2 * k) % 3 == 0 ? s : -std::numeric_limits<decltype(s)>::infinity();
      }};
      const idx d = lk == 7 ? 5 : 64;
      check_scores<T>("relative", lq, lk, d, salt::no_mask{}, relative, seed++);
      check_scores<T>("relative, causal", lq, lk, d, salt::causal{}, relative, seed++);
      check_scores<T>("relative, window", lq, lk, d, salt::sliding_window{.left = 20, .right = 5}, relative, seed++);
      check_scores<T>("relative + bias", lq, lk, d, salt::no_mask{}, relative + bias, seed++);
      check_scores<T>("bias + relative", lq, lk, d, salt::causal{}, bias + relative, seed++);
      check_scores<T>("relative of (dot scale 0.3 + alibi)", lq, lk, d, salt::no_mask{},
                      salt::elementwise_score{relative.f, salt::dot_product{.scale = 0.3} + al}, seed++);
      check_scores<T>("cap, window", lq, lk, d, salt::sliding_window{.left = 9, .right = 9}, cap, seed++, 4.0);
      check_scores<T>("f drops pairs", lq, lk, d, salt::no_mask{}, sparse, seed++);
    }
  }
}

TEST_CASE("elementwise_score passes each logit its batch item, head and positions", "[score]") {
  // f encodes its arguments; the tile starts at query 5, key 70 of batch item 2, head 3.
  const auto encode = salt::elementwise_score{
      [](auto s, idx b, idx h, idx q, idx k) { return s + decltype(s)(1e6 * b + 1e5 * h + 1e3 * q + k); }};
  std::vector<double> tile(4 * 3, 0.5);  // 3 keys x 4 queries, key-major, stride 4
  const salt::logit_tile<double> t{tile.data(), 4, 5, 70, 4, 3};
  encode.apply(t, salt::problem_shape{100, 100, 2, 3});
  for (idx i = 0; i < 4; ++i)
    for (idx j = 0; j < 3; ++j) CHECK(t.at(i, j) == 0.5 + 2e6 + 3e5 + 1e3 * double(5 + i) + double(70 + j));
}

TEST_CASE("elementwise_score is a trivially copyable score policy when f is", "[score]") {
  const double slope = 0.25;
  const auto by_value = salt::elementwise_score{[slope](auto s, idx, idx, idx q, idx k) { return s - slope * (q - k); }};
  using by_value_t = std::remove_const_t<decltype(by_value)>;
  STATIC_REQUIRE(salt::score_policy<by_value_t>);
  STATIC_REQUIRE(std::is_trivially_copyable_v<by_value_t>);
  STATIC_REQUIRE(by_value_t::uses_dot_product());
  STATIC_REQUIRE(!by_value_t::is_identity());
  STATIC_REQUIRE(std::is_same_v<decltype(salt::elementwise_score{relative_bias{}}),
                                salt::elementwise_score<relative_bias, salt::dot_product>>);
  STATIC_REQUIRE(std::is_same_v<decltype(salt::elementwise_score{relative_bias{}, salt::dot_product{.scale = 2.0}}),
                                salt::elementwise_score<relative_bias, salt::dot_product>>);
  STATIC_REQUIRE(salt::score_policy<decltype(by_value + salt::alibi{})>);
  const salt::elementwise_score scaled{relative_bias{}, salt::dot_product{.scale = 2.0}};
  CHECK(scaled.dot_scale(64) == 2.0);
  CHECK(by_value.dot_scale(64) == 0.125);
}

TEST_CASE("alibi is a trivially copyable aggregate that views lvalue slopes and spans", "[score]") {
  STATIC_REQUIRE(salt::score_policy<salt::alibi>);
  STATIC_REQUIRE(std::is_trivially_copyable_v<salt::alibi>);
  STATIC_REQUIRE(std::is_aggregate_v<salt::alibi>);
  // Only ranges of double bind (a temporary of them fails with a sentence: tests/compile_fail).
  STATIC_REQUIRE(!std::is_convertible_v<std::vector<float>&, decltype(salt::alibi::slopes)>);
  STATIC_REQUIRE(std::is_convertible_v<const std::vector<double>&, decltype(salt::alibi::slopes)>);
  std::vector<double> slopes{0.5, 0.25};
  const std::array<double, 2> fixed{0.5, 0.25};
  const double plain[] = {0.5};
  const salt::alibi from_vector{slopes}, from_array{fixed}, from_c_array{plain},
      from_span{std::span<const double>(slopes).first(1)}, named{.slopes = slopes}, none{};
  CHECK(from_vector.slopes.data() == slopes.data());
  CHECK(from_array.slopes.data() == fixed.data());
  CHECK(from_c_array.slopes.size() == 1);
  CHECK(from_span.slopes.size() == 1);
  CHECK(named.slopes.data() == slopes.data());
  CHECK(none.slopes.empty());
  const salt::alibi returned = [&]() -> salt::alibi { return {slopes}; }();  // converts like a span
  CHECK(returned.slopes.data() == slopes.data());
}

TEST_CASE("ALiBi under a causal mask is the published slope * (j - i)", "[score]") {
  const std::vector<double> slopes{0.5};
  const salt::alibi al{slopes};
  std::vector<double> tile(4 * 6, 0.0);  // 6 keys x 4 queries, key-major
  const salt::logit_tile<double> t{tile.data(), 4, 0, 0, 4, 6};
  al.apply(t, salt::problem_shape{4, 6, 0, 0});
  // Query i sits at key position i + 2; for keys it may see, the bias is 0.5 * (j - (i + 2)).
  for (idx i = 0; i < 4; ++i)
    for (idx j = 0; j <= i + 2; ++j) CHECK(t.at(i, j) == 0.5 * static_cast<double>(j - (i + 2)));
}

TEST_CASE("the default scale is 1/sqrt(d)", "[score]") {
  CHECK(salt::dot_product{}.dot_scale(64) == 0.125);
  CHECK(salt::dot_product{.scale = 2.0}.dot_scale(64) == 2.0);
  CHECK(salt::dot_product{}.dot_scale(0) == 1.0);
}
