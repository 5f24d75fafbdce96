// Every mask and composition of tests/mask_cases.hpp through the backward pass, in float and double, over
// lengths that are not multiples of the tile (1, 7, 65, 257, Lq and Lk crossed where the mask allows it): one
// head against the textbook backward under the accuracy criterion, and for masks that depend on the batch item
// or the head, a grouped-query call (batch 2, two query heads over one K/V head) per head, dK and dV summed
// over the group. The backward is given the oracle's output and LSE (rounded to the precision), so the sweep does
// not build the forward engine for every mask again (test_every_mask checks it; test_backward runs the backward on
// salt's own forward). Kept apart from test_backward.cpp: seventy instantiations of the engine build slowly.
#include <salt/attention.hpp>
#include <salt/attention_backward.hpp>

#include <cstdint>
#include <string>
#include <type_traits>

#include "backward_checks.hpp"
#include "catch.hpp"
#include "mask_cases.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;

constexpr idx lengths[] = {1, 7, 65, 257};
constexpr idx features = 16;

}  // namespace

TEMPLATE_LIST_TEST_CASE("every mask: the backward pass against the textbook backward", "[backward][mask][every]",
                        every_case_in_both_precisions) {
  using Case = typename TestType::mask_case;
  using T = typename TestType::scalar;
  INFO("mask case " << Case::name() << (std::is_same_v<T, float> ? " in float" : " in double"));
  idx shapes = 0, heads = 0, skipped = 0;
  for (const idx lq : lengths) {
    for (const idx lk : lengths) {
      ++shapes;
      if (!Case::fits(lq, lk) || !in_sweep(lq, lk)) {
        ++skipped;
        continue;
      }
      CAPTURE(lq, lk);
      random_source rng(static_cast<std::uint64_t>(lq * 1000 + lk));
      {
        const Case one(mask_shape{1, 1, lq, lk});
        check_head_backward<T, decltype(one.mask()), salt::dot_product, forward_from::oracle>(
            rng.matrix<T>(lq, features), rng.matrix<T>(lk, features), rng.matrix<T>(lk, features),
            rng.matrix<T>(lq, features), one.mask());
        ++heads;
      }
      if constexpr (Case::varies) {
        const Case many(mask_shape{2, 2, lq, lk});
        const auto m = run_multi_head_backward<T, decltype(many.mask()), salt::dot_product, forward_from::oracle>(
            2, 2, 1, lq, lk, features, features, many.mask(), salt::dot_product{}, rng);
        check_multi_head_backward<T>(m, many.mask());
      }
    }
  }
  CAPTURE(shapes, heads, skipped);
  CHECK(shapes == heads + skipped);
  CHECK(heads > 0);
}
