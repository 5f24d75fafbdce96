// Score policies (scaled dot product with any scale, bias table, ALiBi, soft-capping, sums) through the
// engine against the fp64 reference that applies the same policy objects.
#include <salt/attention.hpp>

#include <string>
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
