// bf16 and fp16 storage in the families whose drivers read float rows throughout (detail/through_float.hpp): LSH,
// Linformer and linear attention (FAVOR+, causal elu + 1) give the bits of their float forms on the widened inputs,
// rounded once, multi-head and through the one-head overloads; an out over an input is still refused (the float
// copies would hide it) and nothing is written.
#include <salt/linear.hpp>
#include <salt/linformer.hpp>
#include <salt/lsh.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "catch.hpp"
#include "checks.hpp"
#include "low_precision_checks.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;

/// (B H L, d) rows of S and their widened float copy.
template <class S>
struct pair_of {
  salt::row_matrix<S> stored;
  salt::row_matrix<float> wide;
  pair_of(random_source& rng, idx rows, idx cols)
      : stored(rng.matrix<double>(rows, cols).cast<S>()), wide(stored.template cast<float>()) {}
};

template <class T>
salt::tensor_view<const T> view_of(const salt::row_matrix<T>& m, idx b, idx h, idx l) {
  return salt::tensor_view<const T>::bhld(m.data(), b, h, l, m.cols());
}

}  // namespace

TEMPLATE_TEST_CASE("16-bit storage in LSH, Linformer and linear attention: the float forms' bits", "[precision][families]",
                   Eigen::bfloat16, Eigen::half) {
  using S = TestType;
  const idx B = 2, H = 2, L = 200, d = 32;
  random_source rng(41);
  const pair_of<S> q(rng, B * H * L, d), k(rng, B * H * L, d), v(rng, B * H * L, d);
  salt::row_matrix<S> out(B * H * L, d);
  salt::row_matrix<float> wide_out(B * H * L, d);
  const auto out_view = salt::tensor_view<S>::bhld(out.data(), B, H, L, d);
  const auto wide_view = salt::tensor_view<float>::bhld(wide_out.data(), B, H, L, d);

  SECTION("LSH") {
    const salt::lsh_options opt{.n_hashes = 2, .n_buckets = {8}, .chunk_length = 32, .causal = true};
    const auto rot = salt::lsh_rotations<float>::gaussian(H, d, opt, 3);
    salt::lsh_attention(view_of(q.stored, B, H, L), view_of(v.stored, B, H, L), out_view, rot, opt);
    salt::lsh_attention(view_of(q.wide, B, H, L), view_of(v.wide, B, H, L), wide_view, rot, opt);
    CHECK(same_bits<S>(out, wide_out.cast<S>()));
    const auto rot1 = salt::lsh_rotations<float>::gaussian(1, d, opt, 3);
    const salt::row_matrix<S> one = salt::lsh_attention(q.stored.topRows(L), v.stored.topRows(L), rot1, opt);
    const salt::row_matrix<float> one_wide = salt::lsh_attention(q.wide.topRows(L), v.wide.topRows(L), rot1, opt);
    CHECK(same_bits<S>(one, one_wide.cast<S>()));
  }
  SECTION("Linformer") {
    const auto proj = salt::linformer_projections<float>::gaussian(24, L, H, salt::linformer_sharing::per_head, 5);
    salt::linformer_attention(view_of(q.stored, B, H, L), view_of(k.stored, B, H, L), view_of(v.stored, B, H, L), out_view,
                              proj);
    salt::linformer_attention(view_of(q.wide, B, H, L), view_of(k.wide, B, H, L), view_of(v.wide, B, H, L), wide_view, proj);
    CHECK(same_bits<S>(out, wide_out.cast<S>()));
  }
  SECTION("linear attention") {
    const auto w = salt::random_features<float>::orthogonal(48, d, 6);
    salt::linear_attention(view_of(q.stored, B, H, L), view_of(k.stored, B, H, L), view_of(v.stored, B, H, L), out_view,
                           salt::favor_plus<float>(w));
    salt::linear_attention(view_of(q.wide, B, H, L), view_of(k.wide, B, H, L), view_of(v.wide, B, H, L), wide_view,
                           salt::favor_plus<float>(w));
    CHECK(same_bits<S>(out, wide_out.cast<S>()));
    const salt::row_matrix<S> one =
        salt::linear_attention(q.stored.topRows(L), k.stored.topRows(L), v.stored.topRows(L), salt::elu_plus_one{}, salt::causal{});
    const salt::row_matrix<float> one_wide =
        salt::linear_attention(q.wide.topRows(L), k.wide.topRows(L), v.wide.topRows(L), salt::elu_plus_one{}, salt::causal{});
    CHECK(same_bits<S>(one, one_wide.cast<S>()));
  }
  SECTION("an out over an input is refused, nothing written") {
    salt::row_matrix<S> qkv = q.stored;
    const salt::row_matrix<S> before = qkv;
    const auto w = salt::random_features<float>::orthogonal(48, d, 6);
    const auto in_place = salt::tensor_view<S>::bhld(qkv.data(), B, H, L, d);
    CHECK(error_of([&] {
            salt::linear_attention(view_of(qkv, B, H, L), view_of(k.stored, B, H, L), view_of(v.stored, B, H, L), in_place,
                                   salt::favor_plus<float>(w));
          }) == "salt::linear_attention: out overlaps an input; linear attention cannot run in place");
    CHECK(same_bits<S>(qkv, before));
  }
}
