// salt::merge_by_lse: against the merge formula in fp64 under the accuracy criterion; parts that saw no key
// (-inf), a single part, NaN; a view over parts stored in one buffer in another row order; and the point of it
// all: attention over two disjoint key ranges, merged, is attention over all keys (fp64 naive reference).
#include <salt/merge.hpp>

#include <salt/attention.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <span>
#include <vector>

#include "catch.hpp"
#include "checks.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;
template <class U>
using mat = salt::row_matrix<U>;
template <class T>
using result = salt::attention_result<T>;

/// The merge written out in precision U (inputs converted first): m = max lse, s = sum exp(lse - m),
/// out = sum exp(lse - m) / s * o, lse = m + log s; rows every part of which is -inf get zeros and -inf.
template <class U, class T>
reference_result<U> naive_merge(const std::vector<result<T>>& parts) {
  const idx L = parts[0].out.rows(), dv = parts[0].out.cols();
  reference_result<U> r{mat<U>::Zero(L, dv), salt::column<U>(L)};
  for (idx i = 0; i < L; ++i) {
    U m = -std::numeric_limits<U>::infinity();
    for (const auto& p : parts) m = std::max(m, static_cast<U>(p.lse(i)));
    if (m == -std::numeric_limits<U>::infinity()) {
      r.lse(i) = m;
      continue;
    }
    U sum = 0;
    for (const auto& p : parts) sum += std::exp(static_cast<U>(p.lse(i)) - m);
    for (const auto& p : parts)
      if (p.lse(i) != -std::numeric_limits<T>::infinity())
        r.out.row(i) += std::exp(static_cast<U>(p.lse(i)) - m) / sum * p.out.row(i).template cast<U>();
    r.lse(i) = m + std::log(sum);
  }
  return r;
}

/// A part of L rows of dv values, its LSEs spread over `spread` around `centre`.
template <class T>
result<T> random_part(random_source& rng, idx L, idx dv, double centre, double spread) {
  result<T> p{rng.matrix<T>(L, dv), salt::column<T>(L)};
  for (idx i = 0; i < L; ++i) p.lse(i) = static_cast<T>(centre + spread * rng.uniform());
  return p;
}

template <class T>
void check_against_formula(const std::vector<result<T>>& parts) {
  const result<T> got = salt::merge_by_lse(parts);
  const auto naive = naive_merge<T>(parts);
  const auto ref = naive_merge<oracle_t<T>>(parts);
  const auto e = judge<T>(got.out, naive.out, ref.out, finite_scale(ref.out));
  CAPTURE(parts.size(), e.kernel_error, e.naive_error, e.floor);
  CHECK(e.ok());
  const auto el = judge<T>(got.lse, naive.lse, ref.lse, finite_scale(ref.lse));
  CAPTURE(el.kernel_error, el.naive_error, el.floor);
  CHECK(el.ok());
}

bool same_bits(const auto& a, const auto& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  return std::memcmp(a.data(), b.data(), sizeof(*a.data()) * static_cast<std::size_t>(a.size())) == 0;
}

TEMPLATE_TEST_CASE("merge_by_lse matches the merge formula in fp64", "[merge]", float, double) {
  using T = TestType;
  random_source rng(41);
  for (idx n = 2; n <= 5; ++n) {
    std::vector<result<T>> parts;
    for (idx r = 0; r < n; ++r) parts.push_back(random_part<T>(rng, 37, 13, 3.0 * static_cast<double>(r), 20.0));
    check_against_formula(parts);
  }
  // LSEs near -1e5, where LSH puts a query that sees only itself: the weights must not round at that scale.
  std::vector<result<T>> far{random_part<T>(rng, 20, 8, -1e5, 3.0), random_part<T>(rng, 20, 8, -1e5, 3.0)};
  check_against_formula(far);
}

TEMPLATE_TEST_CASE("merge_by_lse: parts that saw no key weigh nothing", "[merge]", float, double) {
  using T = TestType;
  constexpr T inf = std::numeric_limits<T>::infinity();
  random_source rng(42);
  const result<T> a = random_part<T>(rng, 9, 6, 0.0, 5.0), b = random_part<T>(rng, 9, 6, 1.0, 5.0);
  result<T> none{mat<T>::Constant(9, 6, std::numeric_limits<T>::quiet_NaN()), salt::column<T>::Constant(9, -inf)};
  SECTION("a part that saw no key leaves the other unchanged, bit for bit, and its output is not read") {
    const result<T> got = salt::merge_by_lse(std::vector{a, none});
    CHECK(same_bits(got.out, a.out));
    CHECK(same_bits(got.lse, a.lse));
  }
  SECTION("rows that see no key in some parts") {
    result<T> half = b;
    for (idx i = 0; i < 9; i += 2) half.lse(i) = -inf;
    check_against_formula(std::vector{a, half, b});
  }
  SECTION("every part -inf: zeros and -inf") {
    const result<T> got = salt::merge_by_lse(std::vector{none, none, none});
    CHECK(got.out == mat<T>::Zero(9, 6));
    CHECK(got.lse == salt::column<T>::Constant(9, -inf));
  }
}

TEMPLATE_TEST_CASE("merge_by_lse: one part is copied; NaN propagates to what depends on it", "[merge]", float,
                   double) {
  using T = TestType;
  constexpr T nan = std::numeric_limits<T>::quiet_NaN();
  random_source rng(43);
  result<T> a = random_part<T>(rng, 7, 5, 0.0, 5.0), b = random_part<T>(rng, 7, 5, 0.0, 5.0);
  SECTION("one part, whatever its values") {
    a.out(1, 2) = nan;
    a.lse(3) = -std::numeric_limits<T>::infinity();
    a.lse(4) = nan;
    const result<T> got = salt::merge_by_lse(std::vector{a});
    CHECK(same_bits(got.out, a.out));
    CHECK(same_bits(got.lse, a.lse));
  }
  SECTION("a NaN LSE makes its row NaN; a NaN output entry its entry") {
    result<T> clean = salt::merge_by_lse(std::vector{a, b});
    a.lse(2) = nan;
    b.out(5, 3) = nan;
    const result<T> got = salt::merge_by_lse(std::vector{a, b});
    for (idx i = 0; i < 7; ++i) {
      CAPTURE(i);
      CHECK(std::isnan(got.lse(i)) == (i == 2));
      for (idx j = 0; j < 5; ++j) CHECK(std::isnan(got.out(i, j)) == (i == 2 || (i == 5 && j == 3)));
    }
    clean.out.row(2).setConstant(nan);  // the clean merge with the dirtied entries marked: the rest is unchanged
    clean.out(5, 3) = nan;
    CHECK(max_abs_diff(got.out, clean.out) == 0);
  }
}

TEMPLATE_TEST_CASE("merge_by_lse over a view: parts in one buffer, rows in another order", "[merge]", float, double) {
  using T = TestType;
  random_source rng(44);
  const idx L = 23, dv = 7, n = 3;
  std::vector<result<T>> parts;
  for (idx r = 0; r < n; ++r) parts.push_back(random_part<T>(rng, L, dv, 0.0, 10.0));
  // All parts in one (n L, dv) buffer, part r's row i at row n L - 1 - (r L + i), as LSH holds its sorted rounds.
  mat<T> stacked(n * L, dv);
  salt::column<T> stacked_lse(n * L);
  std::vector<idx> row_map(static_cast<std::size_t>(n * L));
  for (idx r = 0; r < n; ++r)
    for (idx i = 0; i < L; ++i) {
      const idx at = n * L - 1 - (r * L + i);
      stacked.row(at) = parts[static_cast<std::size_t>(r)].out.row(i);
      stacked_lse(at) = parts[static_cast<std::size_t>(r)].lse(i);
      row_map[static_cast<std::size_t>(r * L + i)] = at;
    }
  const std::vector<const T*> outs(static_cast<std::size_t>(n), stacked.data());
  const std::vector<const T*> lses(static_cast<std::size_t>(n), stacked_lse.data());
  const salt::lse_parts_view<T> view{outs, lses, L, dv, dv, 1, row_map.data()};
  mat<T> out(L, dv);
  salt::column<T> lse(L);
  salt::merge_by_lse(view, salt::head_view<T>{out.data(), L, dv, dv}, lse.data());
  const result<T> want = salt::merge_by_lse(parts);
  CHECK(same_bits(out, want.out));
  CHECK(same_bits(lse, want.lse));
}

/// Query q sees key k of a block that starts at key `first` when first + k <= q: causal over the whole
/// sequence, cut into key blocks.
struct causal_block {
  idx first = 0;
  bool allows(idx q, idx k, const salt::problem_shape&) const noexcept { return first + k <= q; }
  static constexpr bool is_always_full() { return false; }
};

TEMPLATE_TEST_CASE("attention over two key ranges, merged, is attention over all keys", "[merge]", float, double) {
  using T = TestType;
  random_source rng(45);
  const idx L = 90, split = 40, d = 16, dv = 12;
  const mat<T> q = rng.matrix<T>(L, d, 2.0), k = rng.matrix<T>(L, d, 2.0), v = rng.matrix<T>(L, dv);
  const mat<T> k1 = k.topRows(split), v1 = v.topRows(split), k2 = k.bottomRows(L - split), v2 = v.bottomRows(L - split);
  SECTION("no mask") {
    const result<T> got = salt::merge_by_lse(
        std::vector{salt::attention_with_lse(q, k1, v1), salt::attention_with_lse(q, k2, v2)});
    const auto naive = naive_attention<T>(q, k, v);
    const auto ref = naive_attention<oracle_t<T>>(q, k, v);
    const auto e = judge<T>(got.out, naive.out, ref.out, finite_scale(v));
    CAPTURE(e.kernel_error, e.naive_error, e.floor);
    CHECK(e.ok());
    const auto el = judge<T>(got.lse, naive.lse, ref.lse, finite_scale(ref.lse));
    CHECK(el.ok());
  }
  SECTION("causal: the first queries see no key of the second range") {
    const result<T> got =
        salt::merge_by_lse(std::vector{salt::attention_with_lse(q, k1, v1, causal_block{0}),
                                       salt::attention_with_lse(q, k2, v2, causal_block{split})});
    const auto naive = naive_attention<T>(q, k, v, causal_block{0});
    const auto ref = naive_attention<oracle_t<T>>(q, k, v, causal_block{0});
    const auto e = judge<T>(got.out, naive.out, ref.out, finite_scale(v));
    CAPTURE(e.kernel_error, e.naive_error, e.floor);
    CHECK(e.ok());
    const auto el = judge<T>(got.lse, naive.lse, ref.lse, finite_scale(ref.lse));
    CHECK(el.ok());
  }
}

TEST_CASE("merge_by_lse rejects bad input", "[merge][errors]") {
  random_source rng(46);
  const result<float> a = random_part<float>(rng, 5, 4, 0.0, 1.0), b = random_part<float>(rng, 6, 4, 0.0, 1.0);
  CHECK(error_of([] { (void)salt::merge_by_lse(std::vector<result<float>>{}); }) ==
        "salt::merge_by_lse: no part given");
  CHECK(error_of([&] { (void)salt::merge_by_lse(std::vector{a, b}); }) ==
        "salt::merge_by_lse: part 1 is 6 x 4 with 6 LSEs but part 0 is 5 x 4 with 5 LSEs");
  result<float> short_lse = a;
  short_lse.lse.resize(3);
  CHECK(error_of([&] { (void)salt::merge_by_lse(std::vector{short_lse, a}); }) ==
        "salt::merge_by_lse: part 0 has 5 output rows but 3 LSEs");
  const std::vector<const float*> outs{a.out.data()}, lses{a.lse.data(), a.lse.data()};
  mat<float> out(5, 4);
  const salt::head_view<float> out_view{out.data(), 5, 4, 4};
  CHECK(error_of([&] { salt::merge_by_lse(salt::lse_parts_view<float>{{}, {}, 5, 4, 4}, out_view); }) ==
        "salt::merge_by_lse: no part given");
  CHECK(error_of([&] { salt::merge_by_lse(salt::lse_parts_view<float>{outs, lses, 5, 4, 4}, out_view); }) ==
        "salt::merge_by_lse: 1 output pointers but 2 LSE pointers");
  CHECK(error_of([&] {
          salt::merge_by_lse(salt::lse_parts_view<float>{outs, std::span(lses).first(1), 6, 4, 4}, out_view);
        }) == "salt::merge_by_lse: out is (5, 4) but the parts are (6, 4)");
}

}  // namespace
