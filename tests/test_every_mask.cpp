// Every mask and composition of tests/mask_cases.hpp, in float and double, over lengths that are not
// multiples of the tile (1, 7, 63, 65, 257, Lq and Lk crossed where the mask allows it): one head through the
// engine against the oracle under the accuracy criterion; the multi-head path (batch 2, two query heads over
// one K/V head) per batch item and head for masks that depend on them; and the block plans against the
// mask's own per-pair test. One generic body for every case keeps each instantiation light.
#include <salt/mask.hpp>

#include <salt/attention.hpp>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "catch.hpp"
#include "checks.hpp"
#include "mask_cases.hpp"
#include "plan_violation.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;

using every_case = every_case_in_both_precisions;

constexpr idx lengths[] = {1, 7, 63, 65, 257};
constexpr idx features = 16;
constexpr idx batch = 2, q_heads = 2, kv_heads = 1;

/// What one case ran and skipped, so that a case that skips everything fails instead of passing.
struct tally {
  idx shapes = 0, heads = 0, multi_head = 0, plans = 0, not_meaningful = 0, out_of_sweep = 0;
};

/// The multi-head call against the oracle for each batch item and query head, LSE included.
template <class T, class Mask>
void check_multi_head(const Mask& mask, idx lq, idx lk, random_source& rng) {
  const salt::row_matrix<T> q = rng.matrix<T>(batch * q_heads * lq, features),  // (B Hq Lq, d)
      k = rng.matrix<T>(batch * kv_heads * lk, features),                        // (B Hkv Lk, d)
      v = rng.matrix<T>(batch * kv_heads * lk, features);                        // (B Hkv Lk, d)
  salt::row_matrix<T> out(batch * q_heads * lq, features);                       // (B Hq Lq, d)
  std::vector<T> lse(static_cast<std::size_t>(batch * q_heads * lq));            // (B, Hq, Lq)
  salt::attention(salt::tensor_view<const T>::bhld(q.data(), batch, q_heads, lq, features),
                  salt::tensor_view<const T>::bhld(k.data(), batch, kv_heads, lk, features),
                  salt::tensor_view<const T>::bhld(v.data(), batch, kv_heads, lk, features),
                  salt::tensor_view<T>::bhld(out.data(), batch, q_heads, lq, features),
                  salt::lse_view<T>::bht(lse.data(), q_heads, lq), mask);
  const auto rows = [](const salt::row_matrix<T>& m, idx first, idx count) {
    return salt::row_matrix<T>(m.middleRows(first * count, count));
  };
  for (idx b = 0; b < batch; ++b) {
    for (idx h = 0; h < q_heads; ++h) {
      CAPTURE(b, h);
      const idx g = h / (q_heads / kv_heads);  // the K/V head of query head h
      const salt::row_matrix<T> qh = rows(q, b * q_heads + h, lq), kh = rows(k, b * kv_heads + g, lk),
                                vh = rows(v, b * kv_heads + g, lk);
      const salt::problem_shape where{lq, lk, b, h};
      const auto naive = naive_attention<T>(qh, kh, vh, mask, salt::dot_product{}, where);
      const auto ref = naive_attention<oracle_t<T>>(qh, kh, vh, mask, salt::dot_product{}, where);
      const auto acc = judge<T>(rows(out, b * q_heads + h, lq), naive.out, ref.out, finite_scale(vh));
      CAPTURE(acc.kernel_error, acc.naive_error, acc.floor);
      CHECK(acc.ok());
      const Eigen::Map<const salt::column<T>> lse_h(lse.data() + (b * q_heads + h) * lq, lq);
      const auto lse_acc = judge<T>(lse_h, naive.lse, ref.lse, finite_scale(ref.lse));
      CAPTURE(lse_acc.kernel_error, lse_acc.naive_error, lse_acc.floor);
      CHECK(lse_acc.ok());
    }
  }
}

/// The plans for the engine's own tile and key block in precision T, a finer grid, and (on small shapes:
/// plan_violation's cost grows with the number of blocks) the finest.
template <class T, class Mask>
void check_plans(const Mask& mask, idx lq, idx lk, bool tight, idx head, idx batch, tally& ran) {
  using tiles = salt::detail::tile_shape<T>;
  struct grid {
    idx query_tile, block;
  };
  for (const grid g : {grid{tiles::query_tile, tiles::key_block}, grid{16, 8}, grid{1, 1}}) {
    if (g.block == 1 && lq * lk > 65 * 65) continue;
    const std::string violation = plan_violation(mask, lq, lk, g.query_tile, g.block, tight, head, batch);
    CAPTURE(violation);
    CHECK(violation.empty());
    ++ran.plans;
  }
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("every mask: the engine against the oracle, the plans against the per-pair test",
                        "[mask][every][reference][plan]", every_case) {
  using Case = typename TestType::mask_case;
  using T = typename TestType::scalar;
  const std::string name = Case::name() + (std::is_same_v<T, float> ? " in float" : " in double");
  INFO("mask case " << name);
  tally ran;
  for (const idx lq : lengths) {
    for (const idx lk : lengths) {
      ++ran.shapes;
      if (!Case::fits(lq, lk)) {
        ++ran.not_meaningful;
        continue;
      }
      if (!in_sweep(lq, lk)) {
        ++ran.out_of_sweep;
        continue;
      }
      CAPTURE(lq, lk);
      random_source rng(static_cast<std::uint64_t>(lq * 1000 + lk));
      {
        const Case one(mask_shape{1, 1, lq, lk});
        const salt::row_matrix<T> q = rng.matrix<T>(lq, features), k = rng.matrix<T>(lk, features),
                                  v = rng.matrix<T>(lk, features);
        check_head(q, k, v, one.mask());
        ++ran.heads;
        if (!Case::varies) check_plans<T>(one.mask(), lq, lk, Case::tight, 0, 0, ran);
      }
      if constexpr (Case::varies) {
        const Case many(mask_shape{batch, q_heads, lq, lk});
        check_multi_head<T>(many.mask(), lq, lk, rng);
        ++ran.multi_head;
        for (idx b = 0; b < batch; ++b) {
          for (idx h = 0; h < q_heads; ++h) {
            CAPTURE(b, h);
            check_plans<T>(many.mask(), lq, lk, Case::tight, h, b, ran);
          }
        }
      }
    }
  }
  CAPTURE(ran.shapes, ran.heads, ran.multi_head, ran.plans, ran.not_meaningful, ran.out_of_sweep);
  CHECK(ran.shapes == ran.heads + ran.not_meaningful + ran.out_of_sweep);
  CHECK(ran.heads > 0);
  CHECK(ran.plans > 0);
  CHECK(ran.multi_head == (Case::varies ? ran.heads : 0));
}
