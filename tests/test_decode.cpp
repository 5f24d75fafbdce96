// Decode shapes: a few new queries per head (Lq <= 16) against a long cache, the K/V group's query heads
// stacked into one tile and the keys cut into partitions merged by LSE (engine_tiles.hpp, engine_schedule.hpp).
// Every mask of tests/mask_cases.hpp that is meaningful for Lq != Lk, and the score policies, per batch item and
// query head against the fp64 oracle under the accuracy criterion, with grouped-query heads stacked across tile
// boundaries; the cut is checked to happen, and to give the same bits on 1, 2 and 7 threads.
#include <salt/attention.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "catch.hpp"
#include "mask_cases.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;

/// A grouped-query decode call: (batch, q_heads, lq, d) queries against (batch, kv_heads, lk, d) keys and values.
struct decode_shape {
  idx batch, q_heads, kv_heads, lq, lk, d;
};

template <class T>
struct decode_inputs {
  salt::row_matrix<T> q, k, v;  // (B H L, d) each, rows of head (b, h) consecutive
  decode_inputs(const decode_shape& s, random_source& rng)
      : q(rng.matrix<T>(s.batch * s.q_heads * s.lq, s.d)),
        k(rng.matrix<T>(s.batch * s.kv_heads * s.lk, s.d)),
        v(rng.matrix<T>(s.batch * s.kv_heads * s.lk, s.d)) {}
};

template <class T>
struct decode_outputs {
  salt::row_matrix<T> out;
  std::vector<T> lse;
};

template <class T, class Mask, class Score = salt::dot_product>
decode_outputs<T> run(const decode_shape& s, const decode_inputs<T>& in, const Mask& mask, const Score& score = {},
                      int threads = 0) {
  using view = salt::tensor_view<const T>;
  decode_outputs<T> r{salt::row_matrix<T>(s.batch * s.q_heads * s.lq, s.d),
                      std::vector<T>(static_cast<std::size_t>(s.batch * s.q_heads * s.lq))};
  salt::attention(view::bhld(in.q.data(), s.batch, s.q_heads, s.lq, s.d),
                  view::bhld(in.k.data(), s.batch, s.kv_heads, s.lk, s.d),
                  view::bhld(in.v.data(), s.batch, s.kv_heads, s.lk, s.d),
                  salt::tensor_view<T>::bhld(r.out.data(), s.batch, s.q_heads, s.lq, s.d),
                  salt::lse_view<T>::bht(r.lse.data(), s.q_heads, s.lq), mask, score, salt::run_options{.threads = threads});
  return r;
}

/// Each (batch item, query head) of a decode call against the oracle; returns the heads checked.
template <class T, class Mask, class Score = salt::dot_product>
idx check_decode(const decode_shape& s, const Mask& mask, const Score& score = {}) {
  random_source rng(static_cast<std::uint64_t>(s.lq * 7919 + s.lk * 31 + s.q_heads));
  const decode_inputs<T> in(s, rng);
  const decode_outputs<T> got = run<T>(s, in, mask, score);
  const auto rows = [](const salt::row_matrix<T>& m, idx first, idx count) {
    return salt::row_matrix<T>(m.middleRows(first * count, count));
  };
  idx heads = 0;
  for (idx b = 0; b < s.batch; ++b) {
    for (idx h = 0; h < s.q_heads; ++h) {
      CAPTURE(b, h);
      const idx g = h / (s.q_heads / s.kv_heads);
      const salt::row_matrix<T> qh = rows(in.q, b * s.q_heads + h, s.lq), kh = rows(in.k, b * s.kv_heads + g, s.lk),
                                vh = rows(in.v, b * s.kv_heads + g, s.lk);
      const salt::problem_shape where{s.lq, s.lk, b, h};
      const auto naive = naive_attention<T>(qh, kh, vh, mask, score, where);
      const auto ref = naive_attention<oracle_t<T>>(qh, kh, vh, mask, score, where);
      const auto acc = judge<T>(rows(got.out, b * s.q_heads + h, s.lq), naive.out, ref.out, finite_scale(vh));
      CAPTURE(acc.kernel_error, acc.naive_error, acc.floor);
      CHECK(acc.ok());
      const Eigen::Map<const salt::column<T>> lse_h(got.lse.data() + (b * s.q_heads + h) * s.lq, s.lq);
      const auto lse_acc = judge<T>(lse_h, naive.lse, ref.lse, finite_scale(ref.lse));
      CAPTURE(lse_acc.kernel_error, lse_acc.naive_error, lse_acc.floor);
      CHECK(lse_acc.ok());
      ++heads;
    }
  }
  return heads;
}

/// Whether the engine cuts this call's tiles into key partitions.
template <class T, class Mask>
bool cuts(const decode_shape& s, const Mask& mask) {
  using shape = salt::detail::tile_shape<T>;
  const auto layout = salt::detail::row_layout::of(s.lq, s.q_heads, s.kv_heads, shape::query_tile);
  return salt::detail::schedule_tiles<T>(mask, layout, s.batch, s.q_heads, s.lk, 1).splits_tiles();
}

using every_case = every_case_in_both_precisions;

// Lq 1 (decoding), 3 and 16 (speculative decoding, the last stacked length) against caches of one key, of part
// of a partition, and of several partitions with a tail (2,100 keys: 33 blocks of 64, cut in 3).
constexpr idx decode_lengths[] = {1, 3, 16};
constexpr idx cache_lengths[] = {1, 700, 2100};

}  // namespace

TEMPLATE_LIST_TEST_CASE("decode: every mask, grouped-query heads stacked, keys cut, against the oracle",
                        "[decode][every][reference]", every_case) {
  using Case = typename TestType::mask_case;
  using T = typename TestType::scalar;
  INFO("mask case " << Case::name() << (std::is_same_v<T, float> ? " in float" : " in double"));
  idx heads = 0, cut = 0, skipped = 0;
  for (const idx lq : decode_lengths) {
    for (const idx lk : cache_lengths) {
      // Eight query heads over two K/V heads: a group of four stacks 4 lq rows, 64 at lq = 16 (a float tile of
      // AVX-512; two and a half of AVX2's 24, so heads are cut between tiles).
      const decode_shape s{2, 8, 2, lq, lk, 16};
      if (!Case::fits(lq, lk) || !in_sweep(lq, lk)) {
        ++skipped;
        continue;
      }
      CAPTURE(lq, lk);
      const Case c(mask_shape{s.batch, s.q_heads, lq, lk});
      heads += check_decode<T>(s, c.mask());
      cut += cuts<T>(s, c.mask());
    }
  }
  CAPTURE(heads, cut, skipped);
  CHECK(heads > 0);
  CHECK(heads + skipped * 16 == 9 * 16);
}

TEST_CASE("decode: a group of three heads, an odd head size, scores and causal offsets", "[decode][reference]") {
  const std::vector<double> slopes = {0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625};
  const salt::alibi alibi{slopes};
  const auto relative = salt::elementwise_score{[](auto s, idx, idx h, idx q, idx k) {
    using S = decltype(s);
    return s - S(0.01) * S(h + 1) * S(q > k ? q - k : k - q);
  }};
  for (const idx lq : {1, 5, 16}) {
    for (const idx lk : {64, 1500, 4133}) {
      CAPTURE(lq, lk);
      const decode_shape s{1, 6, 2, lq, lk, 24};
      CHECK(check_decode<float>(s, salt::causal{}) == 6);
      CHECK(check_decode<float>(s, salt::causal{}, salt::softcap{20.0}) == 6);
      CHECK(check_decode<float>(s, salt::causal<>{.offset = -300}, salt::dot_product{} + alibi) == 6);
      CHECK(check_decode<double>(s, salt::sliding_window{.left = 700, .right = 0}, relative) == 6);
    }
  }
}

TEST_CASE("decode: split-KV gives the same bits on 1, 2 and 7 threads", "[decode][threads]") {
  const decode_shape s{2, 8, 2, 1, 9000, 64};
  random_source rng(11);
  const decode_inputs<float> in(s, rng);
  const std::vector<salt::index> lengths = {9000, 5000};
  const auto mask = salt::causal{} & salt::key_padding{lengths};
  REQUIRE(cuts<float>(s, mask));
  const auto one = run<float>(s, in, mask, salt::dot_product{}, 1);
  for (const int threads : {2, 7}) {
    CAPTURE(threads);
    const auto many = run<float>(s, in, mask, salt::dot_product{}, threads);
    CHECK((many.out.array() == one.out.array()).all());
    CHECK(many.lse == one.lse);
  }
  CHECK(check_decode<float>(s, mask) == 16);
}

TEST_CASE("decode: a NaN in a value row that padding hides stays hidden, one that a row sees reaches it",
          "[decode][edge]") {
  const decode_shape s{1, 4, 1, 2, 3000, 16};
  random_source rng(5);
  decode_inputs<float> in(s, rng);
  in.v(2010, 3) = std::numeric_limits<float>::quiet_NaN();  // past the sequence length, 2,000, in a cut block
  in.v(1200, 5) = std::numeric_limits<float>::infinity();
  const std::vector<salt::index> lengths = {2000};
  const salt::key_padding padding{lengths};
  const auto got = run<float>(s, in, padding);
  for (idx r = 0; r < s.q_heads * s.lq; ++r) {
    CAPTURE(r);
    for (idx c = 0; c < s.d; ++c) CHECK((c == 5 ? std::isinf(got.out(r, c)) : std::isfinite(got.out(r, c))));
  }
}
