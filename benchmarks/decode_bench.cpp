// Decoding over a KV cache is bound by memory bandwidth: its measure is GB/s of K and V read, against the read
// bandwidth of the same machine, measured in the same run over a buffer of the same size (so both meet the same
// level of the memory hierarchy). Each sample alternates a decode call and a streaming read of that buffer on
// the same threads; the counters are medians over the pairs.
//
//   build/benchmarks/salt_decode_bench                     (Lq = 1, Hq = 32, Hkv = 8, d = 128, fp32)
//   build/benchmarks/salt_decode_bench --benchmark_filter=packing
#include <benchmark/benchmark.h>

#include <salt/salt.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <vector>

#include "common/benchmark_main.hpp"
#include "common/thread_speedup.hpp"

#if SALT_HAS_OPENMP
#include <omp.h>
#endif

namespace {

using salt::index;
double fma_peak_gflops = 0;

/// One decode step of a grouped-query model: `batch` sequences of `lk` cached tokens, one new query each.
struct decode_problem {
  index batch, q_heads, kv_heads, lq, lk, d;
  std::vector<float> q, k, v, out;

  decode_problem(index b, index hq, index hkv, index lq_, index lk_, index d_)
      : batch(b), q_heads(hq), kv_heads(hkv), lq(lq_), lk(lk_), d(d_),
        q(static_cast<std::size_t>(b * hq * lq_ * d_)), k(static_cast<std::size_t>(b * hkv * lk_ * d_)),
        v(k.size()), out(q.size()) {
    salt::random_generator rng(3);
    for (auto* x : {&q, &k, &v})
      for (float& e : *x) e = static_cast<float>(rng.normal());
  }
  double cache_bytes() const { return 2.0 * static_cast<double>(k.size()) * sizeof(float); }

  void attend(int threads) {
    using view = salt::tensor_view<const float>;
    salt::attention(view::bhld(q.data(), batch, q_heads, lq, d), view::bhld(k.data(), batch, kv_heads, lk, d),
                    view::bhld(v.data(), batch, kv_heads, lk, d),
                    salt::tensor_view<float>::bhld(out.data(), batch, q_heads, lq, d), salt::causal{}, salt::dot_product{},
                    salt::run_options{.threads = threads});
  }
  /// The same call with each query head on its own: every K/V head is read q_heads / kv_heads times.
  void attend_head_by_head(int threads) {
    using view = salt::tensor_view<const float>;
    const index group = q_heads / kv_heads;
    for (index b = 0; b < batch; ++b)
      for (index h = 0; h < q_heads; ++h) {
        const index g = h / group;
        salt::attention(view::bhld(q.data() + (b * q_heads + h) * lq * d, 1, 1, lq, d),
                        view::bhld(k.data() + (b * kv_heads + g) * lk * d, 1, 1, lk, d),
                        view::bhld(v.data() + (b * kv_heads + g) * lk * d, 1, 1, lk, d),
                        salt::tensor_view<float>::bhld(out.data() + (b * q_heads + h) * lq * d, 1, 1, lq, d),
                        salt::causal{}, salt::dot_product{}, salt::run_options{.threads = threads});
      }
  }
};

/// A streaming read of `bytes` bytes on `threads` threads: each thread sums a contiguous share with 8
/// independent packet accumulators (as many loads in flight as the core allows).
class read_loop {
 public:
  explicit read_loop(double bytes) : data_(static_cast<std::size_t>(bytes / sizeof(float)), 1.0f) {}
  float run(int threads) const {
    using namespace salt::detail;
    using P = packet<float>;
    constexpr index N = lanes<float>, U = 8;
    const index n = static_cast<index>(data_.size()) / (N * U) * (N * U);
    float total = 0;
#if SALT_HAS_OPENMP
#pragma omp parallel for num_threads(threads) reduction(+ : total) schedule(static)
#endif
    for (index part = 0; part < threads; ++part) {
      const index begin = n * part / threads / (N * U) * (N * U), end = n * (part + 1) / threads / (N * U) * (N * U);
      P acc[U];
      for (auto& a : acc) a = ei::pset1<P>(0.0f);
      for (index i = begin; i < end; i += N * U)
        for (index u = 0; u < U; ++u) acc[u] = ei::padd(acc[u], ei::ploadu<P>(data_.data() + i + u * N));
      P sum = acc[0];
      for (index u = 1; u < U; ++u) sum = ei::padd(sum, acc[u]);
      total += ei::predux(sum);
    }
#if !SALT_HAS_OPENMP
    (void)threads;
#endif
    return total;
  }

 private:
  std::vector<float> data_;
};

template <class F>
double seconds_of(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  benchmark::ClobberMemory();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Decode GB/s against the read bandwidth, pairs alternated; range(0) = Lk, range(1) = threads (0: all).
void BM_decode(benchmark::State& state) {
  const int threads = state.range(1) == 0 ? salt::bench::all_threads() : static_cast<int>(state.range(1));
  decode_problem p(1, 32, 8, 1, state.range(0), 128);
  const read_loop reader(p.cache_bytes());
  float sink = 0;
  p.attend(threads);  // warm-up: pages, the pool, the caches
  sink += reader.run(threads);
  std::vector<double> decode, read, ratio;
  for (auto _ : state) {
    const double t_decode = seconds_of([&] { p.attend(threads); });
    const double t_read = seconds_of([&] { sink += reader.run(threads); });
    state.SetIterationTime(t_decode);
    decode.push_back(p.cache_bytes() / t_decode * 1e-9);
    read.push_back(p.cache_bytes() / t_read * 1e-9);
    ratio.push_back(t_read / t_decode);
  }
  state.counters["cache_MiB"] = p.cache_bytes() / (1 << 20);
  state.counters["decode_GBps"] = salt::bench::median_of(decode);
  state.counters["read_GBps"] = salt::bench::median_of(read);
  state.counters["of_read"] = salt::bench::median_of(ratio);
  state.counters["threads"] = threads;
  benchmark::DoNotOptimize(sink);
}

/// Stacking a K/V group's heads into one tile against running each query head alone (same threads).
void BM_decode_packing(benchmark::State& state) {
  const int threads = state.range(1) == 0 ? salt::bench::all_threads() : static_cast<int>(state.range(1));
  decode_problem p(1, 32, 8, 1, state.range(0), 128);
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
  decode_problem p(1, 32, 8, 1, state.range(0), 128);
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

void decode_sizes(benchmark::internal::Benchmark* b) {
  // 32K keys: K + V = 256 MiB (inside a 300 MiB L3 of the Xeon the issue names); 128K: 1 GiB, past any L3.
  for (const int threads : {1, 0})
    for (const index lk : {4096, 32768, 131072}) b->Args({lk, threads});
  b->UseManualTime()->Iterations(15)->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(BM_decode)->Apply(decode_sizes);
BENCHMARK(BM_decode_packing)->Apply(decode_sizes);
BENCHMARK(BM_decode_paged)->Apply([](benchmark::internal::Benchmark* b) {
  for (const int threads : {1, 0})
    for (const salt::index page : {16, 128}) b->Args({32768, threads, page});
  b->UseManualTime()->Iterations(15)->Unit(benchmark::kMillisecond);
});

int main(int argc, char** argv) { return salt::bench::benchmark_main(argc, argv, fma_peak_gflops); }
