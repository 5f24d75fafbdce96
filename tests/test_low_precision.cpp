// bf16 and fp16 storage (precision.hpp) through the engine. Every mask of tests/mask_cases.hpp in bf16, one head
// and multi-head with grouped-query heads, prefill and decode shapes, under DESIGN.md §6's criterion: the error
// against the fp64 reference on the same rounded inputs is at most twice that of the naive float computation
// (its output rounded to the storage type, as the kernel's is) plus a floor of float's epsilon. And the promise
// the widening kernels make: the bits of the float kernel run on the widened inputs, output rounded once (the
// Sparse Transformer's causal patterns aside, which float runs in two passes and the narrower types in one).
// fp16 shares every line of the mask path with bf16 (they differ in widen_row alone), so it runs over fewer
// masks and the decode and paged shapes.
#include <salt/attention.hpp>
#include <salt/kv_cache.hpp>

#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "catch.hpp"
#include "low_precision_checks.hpp"
#include "mask_cases.hpp"
#include "reference.hpp"

namespace {

using idx = salt::index;
using namespace salt::test;
using bf16 = Eigen::bfloat16;
using fp16 = Eigen::half;

template <class S>
std::string type_name() {
  return std::is_same_v<S, bf16> ? "bf16" : std::is_same_v<S, fp16> ? "fp16" : "float";
}

using shape = gqa_shape;

/// Inputs drawn in double and rounded once to S, so the oracle sees exactly what the kernel sees.
template <class S>
struct inputs {
  salt::row_matrix<S> q, k, v;  // (B H L, d), the rows of head (b, h) consecutive
  inputs(const shape& s, random_source& rng)
      : q(rng.matrix<double>(s.batch * s.q_heads * s.lq, s.d).cast<S>()),
        k(rng.matrix<double>(s.batch * s.kv_heads * s.lk, s.d).cast<S>()),
        v(rng.matrix<double>(s.batch * s.kv_heads * s.lk, s.d).cast<S>()) {}
  inputs(salt::row_matrix<S> q_, salt::row_matrix<S> k_, salt::row_matrix<S> v_)
      : q(std::move(q_)), k(std::move(k_)), v(std::move(v_)) {}
  inputs<float> widened() const { return {q.template cast<float>(), k.template cast<float>(), v.template cast<float>()}; }
};

template <class S>
struct outputs {
  salt::row_matrix<S> out;
  std::vector<float> lse;
};

template <class S, class Mask, class Score = salt::dot_product>
outputs<S> run(const shape& s, const inputs<S>& in, const Mask& mask, const Score& score = {}, int threads = 0) {
  using view = salt::tensor_view<const S>;
  outputs<S> r{salt::row_matrix<S>(s.batch * s.q_heads * s.lq, s.d),
               std::vector<float>(static_cast<std::size_t>(s.batch * s.q_heads * s.lq))};
  salt::attention(view::bhld(in.q.data(), s.batch, s.q_heads, s.lq, s.d),
                  view::bhld(in.k.data(), s.batch, s.kv_heads, s.lk, s.d),
                  view::bhld(in.v.data(), s.batch, s.kv_heads, s.lk, s.d),
                  salt::tensor_view<S>::bhld(r.out.data(), s.batch, s.q_heads, s.lq, s.d),
                  salt::lse_view<float>::bht(r.lse.data(), s.q_heads, s.lq), mask, score,
                  salt::run_options{.threads = threads});
  return r;
}

/// What a check compared, so that a case that compares nothing fails.
struct tally {
  idx heads = 0, bit_checks = 0;
};

/// Each (batch item, query head) of a call in storage S against the fp64 oracle under the low-precision criterion,
/// and the whole call against the float kernel on the widened inputs, bit for bit (unless `bits` is false).
template <class S, class Mask, class Score = salt::dot_product>
void check_call(const shape& s, const Mask& mask, tally& ran, const Score& score = {}, bool bits = true) {
  random_source rng(static_cast<std::uint64_t>(s.lq * 7919 + s.lk * 31 + s.q_heads * 3 + s.d));
  const inputs<S> in(s, rng);
  const outputs<S> got = run<S>(s, in, mask, score);
  const inputs<float> widened = in.widened();  // the same values in float
  if (bits) {
    const outputs<float> wide = run<float>(s, widened, mask, score);
    const salt::row_matrix<S> rounded = wide.out.template cast<S>();
    CHECK(same_bits<S>(got.out, rounded));
    CHECK(got.lse == wide.lse);
    ++ran.bit_checks;
  }
  ran.heads += check_each_head<S>(s, widened.q, widened.k, widened.v, got.out, got.lse, mask, score);
}

/// Masks whose float calls take the Sparse Transformer's two passes, whose bits the one-pass engine does not share.
template <class Mask>
constexpr bool float_runs_as_passes = salt::detail::runs_as_passes<Mask, salt::dot_product>;

// Prefill shapes (one query tile, several with a tail; Lq and Lk crossed where the mask allows), decode shapes
// (Lq 1 and 3 against a cache cut into key partitions), all with two query heads per K/V head.
constexpr shape bf16_shapes[] = {{1, 2, 1, 7, 7, 16},    {1, 2, 1, 65, 65, 16},   {2, 2, 1, 257, 257, 16},
                                 {1, 2, 1, 63, 257, 24}, {2, 4, 2, 1, 2100, 16}, {1, 4, 2, 3, 700, 32}};

}  // namespace

TEMPLATE_LIST_TEST_CASE("bf16 storage: every mask against the oracle, and the float kernel's bits",
                        "[precision][every][reference]", every_mask_case<float>) {
  using Case = TestType;
  using mask_type = std::decay_t<decltype(std::declval<const Case&>().mask())>;
  constexpr bool bits = !float_runs_as_passes<mask_type>;
  INFO("mask case " << Case::name() << " in bf16");
  tally ran;
  idx shapes = 0;
  for (const shape& s : bf16_shapes) {
    if (!Case::fits(s.lq, s.lk) || !in_sweep(s.lq, s.lk)) continue;
    CAPTURE(s.batch, s.q_heads, s.lq, s.lk, s.d);
    const Case c(mask_shape{s.batch, s.q_heads, s.lq, s.lk});
    check_call<bf16>(s, c.mask(), ran, salt::dot_product{}, bits);
    ++shapes;
  }
  CAPTURE(ran.heads, ran.bit_checks, shapes);
  CHECK(shapes > 0);
  CHECK(ran.bit_checks == (bits ? shapes : 0));
}

TEMPLATE_TEST_CASE("fp16 and bf16 storage: dense, causal, a window and scores, prefill and decode", "[precision][reference]",
                   bf16, fp16) {
  using S = TestType;
  INFO(type_name<S>());
  tally ran;
  const std::vector<double> slopes = {0.5, 0.25, 0.125, 0.0625};
  const salt::alibi alibi{slopes};
  const std::vector<double> sinks = {0.5, -1.0, 2.0, 0.0};
  const salt::attention_sinks with_sinks{sinks};
  for (const shape& s : {shape{1, 4, 2, 100, 100, 64}, shape{2, 4, 1, 1, 3000, 64}, shape{1, 4, 4, 16, 1500, 48}}) {
    CAPTURE(s.lq, s.lk, s.d);
    check_call<S>(s, salt::no_mask{}, ran);
    check_call<S>(s, salt::causal{}, ran);
    check_call<S>(s, salt::sliding_window{.left = 300, .right = 0}, ran, salt::dot_product{} + alibi);
    check_call<S>(s, salt::causal{}, ran, salt::softcap{10.0});
    check_call<S>(s, salt::causal{}, ran, salt::dot_product{} + with_sinks);
  }
  CHECK(ran.heads == 5 * (4 + 8 + 4));
  CHECK(ran.bit_checks == 15);
}

TEST_CASE("bf16 storage: fp16's values that bf16 cannot hold, and the other way round", "[precision][edge]") {
  // fp16 keeps 11 significant bits up to 65504; bf16 keeps 8 over float's range. Values of 1e4 overflow neither;
  // logits of +-300 (q and k of 12) are fine in both, since they are taken in float.
  const shape s{1, 1, 1, 5, 40, 16};
  random_source rng(3);
  inputs<double> raw(s, rng);
  raw.q *= 12.0, raw.k *= 12.0, raw.v *= 1e4;
  const inputs<bf16> b(raw.q.cast<bf16>(), raw.k.cast<bf16>(), raw.v.cast<bf16>());
  const inputs<fp16> h(raw.q.cast<fp16>(), raw.k.cast<fp16>(), raw.v.cast<fp16>());
  const auto got_b = run<bf16>(s, b, salt::causal{});
  const auto got_h = run<fp16>(s, h, salt::causal{});
  CHECK(same_bits<bf16>(got_b.out, run<float>(s, b.widened(), salt::causal{}).out.cast<bf16>()));
  CHECK(same_bits<fp16>(got_h.out, run<float>(s, h.widened(), salt::causal{}).out.cast<fp16>()));
  CHECK(got_b.out.cast<float>().allFinite());
  CHECK(got_h.out.cast<float>().allFinite());
}

TEST_CASE("bf16 storage: a paged cache gives the contiguous cache's bits, on any thread count", "[precision][decode]") {
  // Two sequences of 2,500 and 900 tokens in pages of 48 (not a multiple of the key block), 8 query heads over 2.
  const idx heads = 2, q_heads = 8, d = 64, page = 48, most = 2500, table_stride = (most + page - 1) / page;
  const std::vector<salt::index> lengths = {2500, 900};
  random_source rng(17);
  const shape s{2, q_heads, heads, 1, most, d};
  const inputs<bf16> in(s, rng);
  // The pages of both sequences in reverse order, so that no two neighbouring pages of a sequence are adjacent.
  const idx pages = 2 * table_stride;
  std::vector<salt::index> table(static_cast<std::size_t>(2 * table_stride));
  for (idx p = 0; p < pages; ++p) table[static_cast<std::size_t>(p)] = pages - 1 - p;
  std::vector<bf16> k_pages(static_cast<std::size_t>(pages * heads * page * d)), v_pages(k_pages.size());
  const auto kc = salt::paged_view<bf16>::phtd(k_pages.data(), pages, heads, page, d, table, table_stride, lengths);
  const auto vc = salt::paged_view<bf16>::phtd(v_pages.data(), pages, heads, page, d, table, table_stride, lengths);
  const std::vector<salt::index> empty = {0, 0};
  using view = salt::tensor_view<const bf16>;
  salt::append_tokens(kc, view::bhld(in.k.data(), 2, heads, most, d), empty);
  salt::append_tokens(vc, view::bhld(in.v.data(), 2, heads, most, d), empty);
  const salt::key_padding padding{lengths};
  const auto contiguous = run<bf16>(s, in, salt::causal{} & padding);
  for (const int threads : {1, 3}) {
    CAPTURE(threads);
    salt::row_matrix<bf16> out(2 * q_heads, d);
    std::vector<float> lse(static_cast<std::size_t>(2 * q_heads));
    salt::attention(view::bhld(in.q.data(), 2, q_heads, 1, d), kc, vc,
                    salt::tensor_view<bf16>::bhld(out.data(), 2, q_heads, 1, d), salt::lse_view<float>::bht(lse.data(), q_heads, 1),
                    salt::causal{}, salt::dot_product{}, salt::run_options{.threads = threads});
    CHECK(same_bits<bf16>(out, contiguous.out));
    CHECK(lse == contiguous.lse);
    CHECK(same_bits<bf16>(run<bf16>(s, in, salt::causal{} & padding, salt::dot_product{}, threads).out, contiguous.out));
  }
}

TEST_CASE("bf16 storage: the one-head overloads take and return bf16, the LSE in float", "[precision][api]") {
  random_source rng(23);
  const salt::row_matrix<bf16> q = rng.matrix<double>(33, 16).cast<bf16>(), k = rng.matrix<double>(70, 16).cast<bf16>(),
                               v = rng.matrix<double>(70, 8).cast<bf16>();
  const salt::attention_result<bf16> r = salt::attention_with_lse(q, k, v, salt::causal{});
  static_assert(std::is_same_v<decltype(r.lse)::Scalar, float>);
  const salt::row_matrix<bf16> out = salt::attention(q, k, v, salt::causal{});
  const auto wide = salt::attention_with_lse(salt::row_matrix<float>(q.cast<float>()), salt::row_matrix<float>(k.cast<float>()),
                                             salt::row_matrix<float>(v.cast<float>()), salt::causal{});
  CHECK(same_bits<bf16>(out, wide.out.cast<bf16>()));
  CHECK(same_bits<bf16>(r.out, out));
  CHECK(r.lse == wide.lse);
}
