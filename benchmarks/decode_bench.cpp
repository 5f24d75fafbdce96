// Decoding over a KV cache is bound by memory bandwidth: its measure is GB/s of K and V read, against the read
// bandwidth of the same machine, measured in the same run over a buffer of the same size (so both meet the same
// level of the memory hierarchy). Each sample alternates a decode call and a streaming read of that buffer on
// the same threads; the counters are medians over the pairs.
//
//   build/benchmarks/salt_decode_bench                     (Lq = 1, Hq = 32, Hkv = 8, d = 128, fp32)
//   build/benchmarks/salt_decode_bench --benchmark_filter=packing
//   build/benchmarks/salt_decode_bench --benchmark_filter=storage     (bf16 and fp16 caches against float)
//   build/benchmarks/salt_decode_bench --benchmark_filter=int8        (int8 caches with scales against float)
#include <benchmark/benchmark.h>

#include <salt/salt.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <type_traits>
#include <vector>

#include "common/bandwidth.hpp"
#include "common/benchmark_main.hpp"
#include "common/thread_speedup.hpp"

namespace {

using salt::index;
using salt::bench::read_loop;
using salt::bench::seconds_of;
double fma_peak_gflops = 0;

/// One decode step of a grouped-query model: `batch` sequences of `lk` cached tokens, one new query each, stored
/// in S (the same values, rounded, for every S).
template <class S = float>
struct decode_problem {
  index batch, q_heads, kv_heads, lq, lk, d;
  std::vector<S> q, k, v, out;

  decode_problem(index b, index hq, index hkv, index lq_, index lk_, index d_)
      : batch(b), q_heads(hq), kv_heads(hkv), lq(lq_), lk(lk_), d(d_),
        q(static_cast<std::size_t>(b * hq * lq_ * d_)), k(static_cast<std::size_t>(b * hkv * lk_ * d_)),
        v(k.size()), out(q.size()) {
    salt::random_generator rng(3);
    for (auto* x : {&q, &k, &v})
      for (S& e : *x) e = static_cast<S>(static_cast<float>(rng.normal()));
  }
  double cache_bytes() const { return 2.0 * static_cast<double>(k.size()) * sizeof(S); }

  void attend(int threads) {
    using view = salt::tensor_view<const S>;
    salt::attention(view::bhld(q.data(), batch, q_heads, lq, d), view::bhld(k.data(), batch, kv_heads, lk, d),
                    view::bhld(v.data(), batch, kv_heads, lk, d),
                    salt::tensor_view<S>::bhld(out.data(), batch, q_heads, lq, d), salt::causal{}, salt::dot_product{},
                    salt::run_options{.threads = threads});
  }
  /// The same call with each query head on its own: every K/V head is read q_heads / kv_heads times.
  void attend_head_by_head(int threads) {
    using view = salt::tensor_view<const S>;
    const index group = q_heads / kv_heads;
    for (index b = 0; b < batch; ++b)
      for (index h = 0; h < q_heads; ++h) {
        const index g = h / group;
        salt::attention(view::bhld(q.data() + (b * q_heads + h) * lq * d, 1, 1, lq, d),
                        view::bhld(k.data() + (b * kv_heads + g) * lk * d, 1, 1, lk, d),
                        view::bhld(v.data() + (b * kv_heads + g) * lk * d, 1, 1, lk, d),
                        salt::tensor_view<S>::bhld(out.data() + (b * q_heads + h) * lq * d, 1, 1, lq, d),
                        salt::causal{}, salt::dot_product{}, salt::run_options{.threads = threads});
      }
  }
};

/// Times `attend`, a decode over `bytes` bytes of cache, against a streaming read of as many bytes and, when a
/// `baseline` is given, against it (the same decode over a float cache): calls alternated (baseline, attend, read)
/// on the same threads, medians into the counters. `of_read` is the read's time over the decode's, `over_float`
/// the baseline's.
template <class Attend, class Baseline = std::nullptr_t>
void time_against_read(benchmark::State& state, int threads, double bytes, const Attend& attend,
                       const Baseline& baseline = nullptr) {
  constexpr bool compared = !std::is_same_v<Baseline, std::nullptr_t>;
  const read_loop reader(bytes);
  float sink = 0;
  if constexpr (compared) baseline();
  attend();  // warm-up: pages, the pool, the caches
  sink += reader.run(threads);
  std::vector<double> decode, read, ratio, over_float;
  for (auto _ : state) {
    double t_baseline = 0;
    if constexpr (compared) t_baseline = seconds_of(baseline);
    const double t_decode = seconds_of(attend);
    const double t_read = seconds_of([&] { sink += reader.run(threads); });
    state.SetIterationTime(t_decode);
    decode.push_back(bytes / t_decode * 1e-9);
    read.push_back(bytes / t_read * 1e-9);
    ratio.push_back(t_read / t_decode);
    over_float.push_back(t_baseline / t_decode);
  }
  state.counters["cache_MiB"] = bytes / (1 << 20);
  state.counters["decode_GBps"] = salt::bench::median_of(decode);
  state.counters["read_GBps"] = salt::bench::median_of(read);
  state.counters["of_read"] = salt::bench::median_of(ratio);
  if constexpr (compared) state.counters["over_float"] = salt::bench::median_of(over_float);
  state.counters["threads"] = threads;
  benchmark::DoNotOptimize(sink);
}

/// Decode GB/s against the read bandwidth, pairs alternated; range(0) = Lk, range(1) = threads (0: all).
void BM_decode(benchmark::State& state) {
  const int threads = state.range(1) == 0 ? salt::bench::all_threads() : static_cast<int>(state.range(1));
  decode_problem<> p(1, 32, 8, 1, state.range(0), 128);
  time_against_read(state, threads, p.cache_bytes(), [&] { p.attend(threads); });
}

/// Stacking a K/V group's heads into one tile against running each query head alone (same threads).
void BM_decode_packing(benchmark::State& state) {
  const int threads = state.range(1) == 0 ? salt::bench::all_threads() : static_cast<int>(state.range(1));
  decode_problem<> p(1, 32, 8, 1, state.range(0), 128);
  p.attend(threads);
  p.attend_head_by_head(threads);
  std::vector<double> packed, alone, ratio;
  for (auto _ : state) {
    const double t_packed = seconds_of([&] { p.attend(threads); });
    const double t_alone = seconds_of([&] { p.attend_head_by_head(threads); });
    state.SetIterationTime(t_packed);
    packed.push_back(p.cache_bytes() / t_packed * 1e-9);
    alone.push_back(p.cache_bytes() / t_alone * 1e-9);
    ratio.push_back(t_alone / t_packed);
  }
  state.counters["packed_GBps"] = salt::bench::median_of(packed);
  state.counters["head_by_head_GBps"] = salt::bench::median_of(alone);
  state.counters["speedup"] = salt::bench::median_of(ratio);
  state.counters["threads"] = threads;
}

/// The same call over a paged copy of the cache (pages of range(2) tokens, in shuffled order) against the
/// contiguous cache, pairs alternated; `paged_over_contiguous` is the median ratio of their times.
void BM_decode_paged(benchmark::State& state) {
  const int threads = state.range(1) == 0 ? salt::bench::all_threads() : static_cast<int>(state.range(1));
  const index page = state.range(2);
  decode_problem<> p(1, 32, 8, 1, state.range(0), 128);
  const index pages = (p.lk + page - 1) / page;
  std::vector<index> table(static_cast<std::size_t>(pages)), lengths = {p.lk};
  for (index i = 0; i < pages; ++i) table[static_cast<std::size_t>(i)] = (i * 7919) % pages;  // shuffled
  if (std::gcd(index{7919}, pages) != 1) std::abort();  // ... a permutation
  std::vector<float> k_pages(static_cast<std::size_t>(pages * p.kv_heads * page * p.d)), v_pages(k_pages.size());
  const auto k = salt::paged_view<float>::phtd(k_pages.data(), pages, p.kv_heads, page, p.d, table, pages, lengths);
  const auto v = salt::paged_view<float>::phtd(v_pages.data(), pages, p.kv_heads, page, p.d, table, pages, lengths);
  const std::vector<index> at = {0};
  using view = salt::tensor_view<const float>;
  salt::append_tokens(k, view::bhld(p.k.data(), 1, p.kv_heads, p.lk, p.d), at);
  salt::append_tokens(v, view::bhld(p.v.data(), 1, p.kv_heads, p.lk, p.d), at);
  std::vector<float> out(p.out.size());
  const auto paged = [&] {
    salt::attention(view::bhld(p.q.data(), 1, p.q_heads, 1, p.d), salt::paged_view<const float>(k),
                    salt::paged_view<const float>(v), salt::tensor_view<float>::bhld(out.data(), 1, p.q_heads, 1, p.d),
                    salt::causal{}, salt::dot_product{}, salt::run_options{.threads = threads});
  };
  p.attend(threads);
  paged();
  std::vector<double> contiguous_gbps, paged_gbps, ratio;
  for (auto _ : state) {
    const double t_contiguous = seconds_of([&] { p.attend(threads); });
    const double t_paged = seconds_of(paged);
    state.SetIterationTime(t_paged);
    contiguous_gbps.push_back(p.cache_bytes() / t_contiguous * 1e-9);
    paged_gbps.push_back(p.cache_bytes() / t_paged * 1e-9);
    ratio.push_back(t_paged / t_contiguous);
  }
  if (out != p.out) state.SkipWithError("the paged cache did not give the contiguous cache's bits");
  state.counters["contiguous_GBps"] = salt::bench::median_of(contiguous_gbps);
  state.counters["paged_GBps"] = salt::bench::median_of(paged_gbps);
  state.counters["paged_over_contiguous"] = salt::bench::median_of(ratio);
  state.counters["threads"] = threads;
}

/// A cache stored in S (bf16, fp16) against the same cache in float, and against the read bandwidth over its own
/// bytes: calls alternated (float decode, S decode, read), medians. `of_read` is the fraction of the read
/// bandwidth the S decode reaches over the bytes it reads; `over_float` is float's time over S's.
template <class S>
void BM_decode_storage(benchmark::State& state) {
  const int threads = state.range(1) == 0 ? salt::bench::all_threads() : static_cast<int>(state.range(1));
  decode_problem<float> f(1, 32, 8, 1, state.range(0), 128);
  decode_problem<S> p(1, 32, 8, 1, state.range(0), 128);
  time_against_read(state, threads, p.cache_bytes(), [&] { p.attend(threads); }, [&] { f.attend(threads); });
}

/// An int8 cache (quantized.hpp; range(2) features per scale, 0: one scale per token and head) against the same
/// cache in float and against the read bandwidth over its bytes, values and scales: as BM_decode_storage.
void BM_decode_int8(benchmark::State& state) {
  const int threads = state.range(1) == 0 ? salt::bench::all_threads() : static_cast<int>(state.range(1));
  const index group = state.range(2);
  decode_problem<float> f(1, 32, 8, 1, state.range(0), 128);
  const index per_token = group == 0 ? 1 : f.d / group;
  std::vector<std::int8_t> k8(f.k.size()), v8(f.v.size());
  std::vector<float> k_scales(static_cast<std::size_t>(f.kv_heads * f.lk * per_token)), v_scales(k_scales.size());
  using qview = salt::quantized_view<std::int8_t>;
  const auto k = qview::bhld(k8.data(), k_scales.data(), 1, f.kv_heads, f.lk, f.d, group);
  const auto v = qview::bhld(v8.data(), v_scales.data(), 1, f.kv_heads, f.lk, f.d, group);
  using view = salt::tensor_view<const float>;
  salt::quantize<float>(view::bhld(f.k.data(), 1, f.kv_heads, f.lk, f.d), k);
  salt::quantize<float>(view::bhld(f.v.data(), 1, f.kv_heads, f.lk, f.d), v);
  const double bytes = static_cast<double>(k8.size() + v8.size()) + 4.0 * static_cast<double>(k_scales.size() + v_scales.size());
  std::vector<float> out(f.out.size());
  const auto attend = [&] {
    salt::attention(view::bhld(f.q.data(), 1, f.q_heads, 1, f.d), k, v,
                    salt::tensor_view<float>::bhld(out.data(), 1, f.q_heads, 1, f.d), salt::causal{}, salt::dot_product{},
                    salt::run_options{.threads = threads});
  };
  time_against_read(state, threads, bytes, attend, [&] { f.attend(threads); });
}

void decode_sizes(benchmark::internal::Benchmark* b) {
  // 32K keys: K + V = 256 MiB (inside a 300 MiB L3 of the Xeon the issue names); 128K: 1 GiB, past any L3.
  for (const int threads : {1, 0})
    for (const index lk : {4096, 32768, 131072}) b->Args({lk, threads});
  b->UseManualTime()->Iterations(15)->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(BM_decode)->Apply(decode_sizes);
BENCHMARK(BM_decode_packing)->Apply(decode_sizes);
BENCHMARK(BM_decode_storage<Eigen::bfloat16>)->Apply(decode_sizes);
BENCHMARK(BM_decode_storage<Eigen::half>)->Apply(decode_sizes);
BENCHMARK(BM_decode_int8)->Apply([](benchmark::internal::Benchmark* b) {
  for (const int threads : {1, 0})
    for (const salt::index lk : {32768, 131072})
      for (const salt::index group : {0, 32}) b->Args({lk, threads, group});
  b->UseManualTime()->Iterations(15)->Unit(benchmark::kMillisecond);
});
BENCHMARK(BM_decode_paged)->Apply([](benchmark::internal::Benchmark* b) {
  for (const int threads : {1, 0})
    for (const salt::index page : {16, 128}) b->Args({32768, threads, page});
  b->UseManualTime()->Iterations(15)->Unit(benchmark::kMillisecond);
});

int main(int argc, char** argv) { return salt::bench::benchmark_main(argc, argv, fma_peak_gflops); }
