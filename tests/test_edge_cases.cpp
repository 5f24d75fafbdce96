// What users rely on at the edges (shared/DESIGN.md §3): rows that see no key, huge logits, NaN in one
// input row, empty inputs, and errors that name the function and sizes while leaving outputs untouched.
#include <salt/attention.hpp>

#include <bit>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "catch.hpp"
#include "checks.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;
constexpr float inf = std::numeric_limits<float>::infinity();


}  // namespace

TEMPLATE_TEST_CASE("a row that sees no key outputs zeros and LSE = -inf, never NaN", "[edge]", float, double) {
  using T = TestType;
  random_source rng(1);
  const salt::row_matrix<T> q = rng.matrix<T>(100, 16), k = rng.matrix<T>(100, 16), v = rng.matrix<T>(100, 8);
  // offset -5: queries 0..4 sit before every key they could see.
  const auto r = salt::attention_with_lse(q, k, v, salt::causal<>{.offset = -5});
  for (idx i = 0; i < 5; ++i) {
    CHECK(r.out.row(i).isZero(0));
    CHECK(r.lse(i) == -std::numeric_limits<T>::infinity());
  }
  CHECK(r.out.allFinite());
  const std::vector<idx> none{0};
  const auto padded = salt::attention_with_lse(q, k, v, salt::key_padding{none});
  CHECK(padded.out.isZero(0));
  CHECK((padded.lse.array() == -std::numeric_limits<T>::infinity()).all());
}

TEMPLATE_TEST_CASE("logits of magnitude 1e4 neither overflow nor lose accuracy", "[edge]", float, double) {
  using T = TestType;
  random_source rng(2);
  // q.k / sqrt(d) reaches about 1e4 with entries up to 90 at d = 64.
  const salt::row_matrix<T> q = rng.matrix<T>(130, 64, 90.0), k = rng.matrix<T>(150, 64, 90.0), v = rng.matrix<T>(150, 32);
  const auto r = salt::attention_with_lse(q, k, v, salt::causal{});
  REQUIRE(r.out.allFinite());
  REQUIRE(r.lse.allFinite());
  const auto naive = naive_attention<T>(q, k, v, salt::causal{});
  const auto ref = naive_attention<oracle_t<T>>(q, k, v, salt::causal{});
  CHECK(ref.lse.cwiseAbs().maxCoeff() > 5e3);
  const auto acc = judge<T>(r.out, naive.out, ref.out, 1.0);
  CAPTURE(acc.kernel_error, acc.naive_error);
  CHECK(acc.ok());
}

TEST_CASE("NaN in one key row affects only the rows that see that key", "[edge]") {
  random_source rng(3);
  const idx L = 200, bad = 90;
  salt::row_matrix<float> q = rng.matrix<float>(L, 32), k = rng.matrix<float>(L, 32), v = rng.matrix<float>(L, 32);
  k(bad, 7) = std::numeric_limits<float>::quiet_NaN();
  const auto r = salt::attention_with_lse(q, k, v, salt::causal{});
  for (idx i = 0; i < L; ++i) {
    CAPTURE(i);
    if (i < bad) {
      CHECK(r.out.row(i).allFinite());
    } else {
      CHECK(r.out.row(i).array().isNaN().all());
    }
  }
  const auto naive = naive_attention<float>(q, k, v, salt::causal{});
  const auto ref = naive_attention<double>(q, k, v, salt::causal{});
  CHECK(judge<float>(r.out, naive.out, ref.out, 1.0).ok());  // NaN where the reference has NaN, accurate elsewhere
}

TEST_CASE("a non-finite value row reaches only the rows that see it, also inside a diagonal block", "[edge]") {
  random_source rng(4);
  const idx L = 130, bad = 70;  // key 70 lies inside a block the diagonal cuts
  for (const float poison : {std::numeric_limits<float>::quiet_NaN(), inf}) {
    const salt::row_matrix<float> q = rng.matrix<float>(L, 16), k = rng.matrix<float>(L, 16), v = rng.matrix<float>(L, 16);
    salt::row_matrix<float> v_bad = v;
    v_bad(bad, 3) = poison;
    const auto clean = salt::attention(q, k, v, salt::causal{});
    const auto r = salt::attention(q, k, v_bad, salt::causal{});
    for (idx i = 0; i < L; ++i) {
      CAPTURE(poison, i);
      // The rows that cannot see it, and the other columns of those that can, keep their bits.
      for (idx c = 0; c < 16; ++c)
        if (i < bad || c != 3) CHECK(std::bit_cast<std::uint32_t>(r(i, c)) == std::bit_cast<std::uint32_t>(clean(i, c)));
      if (i >= bad) CHECK((std::isnan(poison) ? std::isnan(r(i, 3)) : r(i, 3) == inf));
    }
  }
}

TEST_CASE("empty inputs", "[edge]") {
  salt::row_matrix<float> none(0, 8), q(5, 8), kv(0, 8);
  q.setOnes();
  CHECK(salt::attention(none, q, q).rows() == 0);  // no queries
  const auto r = salt::attention_with_lse(q, kv, kv);  // no keys: every row sees none
  CHECK(r.out.isZero(0));
  CHECK((r.lse.array() == -inf).all());
  const salt::row_matrix<float> d0(5, 0), v(5, 3);
  const auto uniform = salt::attention(d0, d0, salt::row_matrix<float>::Ones(5, 3));  // d = 0: all logits 0
  CHECK(uniform.isOnes(1e-6f));
}

TEST_CASE("bad shapes and parameters throw salt::error naming the function and sizes; nothing is written", "[edge][errors]") {
  std::vector<float> buffer(4 * 96 * 64, 0.5f), out_buffer(4 * 96 * 64, 7.0f);
  const auto view = [&](idx heads, idx tokens, idx features) {
    return salt::tensor_view<const float>::bhld(buffer.data(), 1, heads, tokens, features);
  };
  const auto out = [&](idx heads, idx tokens, idx features) {
    return salt::tensor_view<float>::bhld(out_buffer.data(), 1, heads, tokens, features);
  };
  const std::vector<float> before = out_buffer;

  CHECK(error_of([&] { salt::attention(view(1, 10, 64), view(1, 96, 64), view(1, 95, 64), out(1, 10, 64)); }) ==
        "salt::attention: k has 96 tokens but v has 95");
  CHECK(error_of([&] { salt::attention(view(1, 10, 64), view(1, 96, 32), view(1, 96, 64), out(1, 10, 64)); }) ==
        "salt::attention: q has 64 features but k has 32");
  CHECK(error_of([&] { salt::attention(view(2, 10, 8), view(4, 10, 8), view(4, 10, 8), out(2, 10, 8)); }) ==
        "salt::attention: k and v have 4 heads, more than q's 2");
  CHECK(error_of([&] { salt::attention(view(3, 10, 8), view(2, 10, 8), view(2, 10, 8), out(3, 10, 8)); }) ==
        "salt::attention: q has 3 heads, not a multiple of k and v's 2");
  CHECK(error_of([&] { salt::attention(view(1, 10, 8), view(1, 10, 8), view(1, 10, 8), out(1, 11, 8)); }) ==
        "salt::attention: out is (1, 1, 11, 8) but must be (1, 1, 10, 8)");
  const std::vector<idx> lengths{11};
  CHECK(error_of([&] {
          salt::attention(view(1, 10, 8), view(1, 10, 8), view(1, 10, 8), out(1, 10, 8), salt::key_padding{lengths});
        }) == "salt::attention: key_padding length 11 of batch item 0 is outside [0, 10]");
  const std::vector<double> slopes{0.5};
  CHECK(error_of([&] {
          salt::attention(view(2, 10, 8), view(1, 10, 8), view(1, 10, 8), out(2, 10, 8), salt::no_mask{},
                          salt::dot_product{} + salt::alibi{slopes});
        }) == "salt::attention: alibi has 1 slopes for 2 query heads");
  CHECK(error_of([&] {
          salt::attention(view(1, 10, 8), view(1, 10, 8), view(1, 10, 8), out(1, 10, 8), salt::no_mask{},
                          salt::dot_product{}, salt::run_options{.threads = -1});
        }) == "salt::attention: threads must be >= 0, got -1");
  CHECK(out_buffer == before);

  // In place is refused: out may not share memory with an input.
  const auto aliased = salt::tensor_view<float>::bhld(buffer.data(), 1, 1, 10, 8);
  CHECK(error_of([&] { salt::attention(view(1, 10, 8), view(1, 10, 8), view(1, 10, 8), aliased); }) ==
        "salt::attention: out overlaps an input; attention cannot run in place");

  // The single-head front door reports through the same checks.
  const salt::row_matrix<double> q(4, 3), k(5, 3), v(6, 2);
  CHECK(error_of([&] { (void)salt::attention(q, k, v); }) == "salt::attention: k has 5 tokens but v has 6");
}
