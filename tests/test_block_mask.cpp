// salt::block_mask: plans built once and reused. A call with a prebuilt plan visits exactly the blocks the
// mask plans itself, so its outputs and LSEs are bit-identical to planning inside the call; the planned
// view answers pairs like the mask; calls of other sizes are rejected; plans of masks that differ per batch
// item and head are kept apart.
#include <salt/block_mask.hpp>

#include <salt/attention.hpp>
#include <salt/plan.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "catch.hpp"
#include "checks.hpp"
#include "plan_check.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;

template <class M>
bool same_bits(const M& a, const M& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), sizeof(typename M::Scalar) * static_cast<std::size_t>(a.size())) == 0;
}

template <class T, class Mask>
void check_same_as_planning_in_call(const std::string& name, const Mask& mask, idx batch, idx heads, idx lq, idx lk) {
  CAPTURE(name, batch, heads, lq, lk);
  const idx d = 24, dv = 20;
  random_source rng(7 + static_cast<std::uint64_t>(lq * 131 + lk));
  const salt::row_matrix<T> q = rng.matrix<T>(batch * heads * lq, d), k = rng.matrix<T>(batch * heads * lk, d),
                            v = rng.matrix<T>(batch * heads * lk, dv);
  using view = salt::tensor_view<const T>;
  const view qv = view::bhld(q.data(), batch, heads, lq, d), kv = view::bhld(k.data(), batch, heads, lk, d),
             vv = view::bhld(v.data(), batch, heads, lk, dv);
  salt::row_matrix<T> planned_out(batch * heads * lq, dv), reused_out(batch * heads * lq, dv);
  salt::row_matrix<T> planned_lse(batch * heads, lq), reused_lse(batch * heads, lq);
  salt::attention<T>(qv, kv, vv, salt::tensor_view<T>::bhld(planned_out.data(), batch, heads, lq, dv),
                     salt::lse_view<T>::bht(planned_lse.data(), heads, lq), mask);
  const salt::block_mask<T, Mask> prebuilt(mask, {.batch = batch, .q_heads = heads, .kv_heads = heads, .lq = lq, .lk = lk});
  for (int call = 0; call < 2; ++call) {  // the same plans serve any number of calls
    salt::attention<T>(qv, kv, vv, salt::tensor_view<T>::bhld(reused_out.data(), batch, heads, lq, dv),
                       salt::lse_view<T>::bht(reused_lse.data(), heads, lq), prebuilt.mask());
    CHECK(same_bits(reused_out, planned_out));
    CHECK(same_bits(reused_lse, planned_lse));
  }
  const salt::problem_dims dims{batch, heads, heads, lq, lk, d, dv};
  const auto own = salt::plan_work<T>(mask, dims), reused = salt::plan_work<T>(prebuilt.mask(), dims);
  CHECK(own.visited_blocks == reused.visited_blocks);
  CHECK(own.full_blocks == reused.full_blocks);
  CHECK(own.visited_pairs == reused.visited_pairs);
}

}  // namespace

TEMPLATE_TEST_CASE("a prebuilt block_mask gives the bits of planning in the call", "[block_mask]", float, double) {
  using T = TestType;
  const std::vector<idx> global{0, 5, 130};
  const std::vector<idx> lengths{200, 77};
  const auto window_global = salt::sliding_window{.left = 40, .right = 17} | salt::global_tokens{global};
  for (const idx l : {1, 7, 63, 65, 257}) {
    if (!in_sweep(l, l)) continue;
    check_same_as_planning_in_call<T>("causal", salt::causal{}, 1, 1, l, l);
    check_same_as_planning_in_call<T>("window | global", window_global, 1, 2, std::max<idx>(l, 131), std::max<idx>(l, 131));
    check_same_as_planning_in_call<T>("strided", salt::strided{.stride = 9}, 1, 1, l, l);
  }
  check_same_as_planning_in_call<T>("causal & key_padding (per batch item)", salt::causal{} & salt::key_padding{lengths}, 2,
                                    2, 150, 220);
  check_same_as_planning_in_call<T>("causal, Lq < Lk", salt::causal{}, 1, 1, 70, 300);
}

TEST_CASE("block_mask's view answers pairs as its mask and plans foreign tiles with it", "[block_mask]") {
  const auto mask = salt::sliding_window{.left = 9, .right = 3} & salt::causal{};
  const salt::block_mask<float, decltype(mask)> prebuilt(mask, {.lq = 300, .lk = 300});
  const auto view = prebuilt.mask();
  const salt::problem_shape s{300, 300, 0, 0};
  for (idx q = 0; q < 300; q += 7)
    for (idx k = 0; k < 300; k += 3) REQUIRE(view.allows(q, k, s) == mask.allows(q, k, s));
  // Tiles of another geometry (double's, another key block) are planned by the mask itself: still exact.
  check_plan("prebuilt, other geometry", view, 300, 300, 24, 16, false);
  check_plan("prebuilt, own geometry", view, 300, 300, salt::detail::tile_shape<float>::query_tile,
             salt::detail::tile_shape<float>::key_block, false);
  CHECK(prebuilt.stored_runs() > 0);
}

TEST_CASE("a call of other sizes than the block_mask's is rejected", "[block_mask]") {
  const salt::block_mask<float, salt::causal<>> prebuilt(salt::causal{}, {.lq = 100, .lk = 100});
  random_source rng(3);
  const salt::row_matrix<float> q = rng.matrix<float>(90, 8), k = rng.matrix<float>(100, 8), v = rng.matrix<float>(100, 8);
  CHECK(error_of([&] { (void)salt::attention(q, k, v, prebuilt.mask()); }) ==
        "salt::attention: the block_mask was built for batch 1, 1 query heads, lq 100, lk 100 but the call has batch 1, 1 "
        "query heads, lq 90, lk 100");
  const std::vector<idx> too_long{101};
  CHECK(error_of([&] {
          (void)salt::block_mask<float, salt::key_padding>(salt::key_padding{too_long}, {.lq = 100, .lk = 100});
        }).find("salt::block_mask: key_padding length 101") == 0);
}
