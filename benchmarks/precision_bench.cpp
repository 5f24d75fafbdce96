// Low-precision storage (precision.hpp) against float at the shapes of the low-precision issue and of the peer
// script: B = 1, H in {1, 8}, L = 4,096, d = 64, dense and causal, at 1 thread and at every core. Each sample
// alternates a float call and an S call on the same values (rounded to S); the counters are medians over the pairs:
// GFLOP/s of the S call (4 L^2 d per head, halved for causal), its fraction of the in-run float FMA peak (the
// kernels compute in float, so that peak is their ceiling), and `over_float`, float's time over S's.
//
//   build/benchmarks/salt_precision_bench
//   build/benchmarks/salt_decode_bench --benchmark_filter=storage      (decoding over bf16 and fp16 caches)
#include <benchmark/benchmark.h>

#include <salt/salt.hpp>

#include <vector>

#include "common/bandwidth.hpp"
#include "common/benchmark_main.hpp"
#include "common/thread_speedup.hpp"

namespace {

using salt::index;
double fma_peak_gflops = 0;

/// (1, H, L, d) queries, keys and values with the same values in float and in S.
template <class S>
struct storage_pair {
  index heads, length, d;
  std::vector<float> q, k, v, out;
  std::vector<S> qs, ks, vs, outs;

  storage_pair(index h, index l, index d_) : heads(h), length(l), d(d_) {
    salt::random_generator rng(0x5a17);
    const auto n = static_cast<std::size_t>(h * l * d_);
    for (auto* x : {&q, &k, &v}) {
      x->resize(n);
      for (float& e : *x) e = static_cast<float>(static_cast<S>(static_cast<float>(2 * rng.uniform() - 1)));
    }
    out.resize(n);
    const auto stored = [](const std::vector<float>& x) {
      std::vector<S> y(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) y[i] = static_cast<S>(x[i]);
      return y;
    };
    qs = stored(q), ks = stored(k), vs = stored(v);
    outs.resize(n);
  }
  template <class T, class Mask>
  void attend(const std::vector<T>& qx, const std::vector<T>& kx, const std::vector<T>& vx, std::vector<T>& ox,
              const Mask& mask, int threads) const {
    using view = salt::tensor_view<const T>;
    salt::attention(view::bhld(qx.data(), 1, heads, length, d), view::bhld(kx.data(), 1, heads, length, d),
                    view::bhld(vx.data(), 1, heads, length, d), salt::tensor_view<T>::bhld(ox.data(), 1, heads, length, d),
                    mask, salt::dot_product{}, salt::run_options{.threads = threads});
  }
};

/// args (L, threads (0: all), heads, causal).
template <class S>
void BM_prefill_storage(benchmark::State& state) {
  const int threads = state.range(1) == 0 ? salt::bench::all_threads() : static_cast<int>(state.range(1));
  const bool causal = state.range(3) != 0;
  storage_pair<S> p(state.range(2), state.range(0), 64);
  const double flops = 4.0 * static_cast<double>(p.heads) * static_cast<double>(p.length * p.length) *
                       static_cast<double>(p.d) * (causal ? 0.5 : 1.0);
  const auto run = [&](bool in_s) {
    if (causal) {
      if (in_s) p.attend(p.qs, p.ks, p.vs, p.outs, salt::causal{}, threads);
      else p.attend(p.q, p.k, p.v, p.out, salt::causal{}, threads);
    } else {
      if (in_s) p.attend(p.qs, p.ks, p.vs, p.outs, salt::no_mask{}, threads);
      else p.attend(p.q, p.k, p.v, p.out, salt::no_mask{}, threads);
    }
  };
  run(false), run(true);  // warm-up
  std::vector<double> gflops, over_float;
  for (auto _ : state) {
    const double t_float = salt::bench::seconds_of([&] { run(false); });
    const double t_s = salt::bench::seconds_of([&] { run(true); });
    state.SetIterationTime(t_s);
    gflops.push_back(flops / t_s * 1e-9);
    over_float.push_back(t_float / t_s);
  }
  const double g = salt::bench::median_of(gflops);
  state.counters["GFLOP/s"] = g;
  state.counters["peak_frac"] = g / (fma_peak_gflops * threads);
  state.counters["over_float"] = salt::bench::median_of(over_float);
  state.counters["threads"] = threads;
}

void BM_fma_peak(benchmark::State& state) {
  for (auto _ : state) state.SetIterationTime(1.0);
  state.counters["GFLOP/s"] = fma_peak_gflops;
}

void prefill_shapes(benchmark::internal::Benchmark* b) {
  for (const int threads : {1, 0})
    for (const index heads : {1, 8})
      for (const int causal : {0, 1}) b->Args({4096, threads, heads, causal});
  b->UseManualTime()->Iterations(5)->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(BM_fma_peak)->UseManualTime()->Iterations(1);
BENCHMARK(BM_prefill_storage<Eigen::bfloat16>)->Apply(prefill_shapes);
BENCHMARK(BM_prefill_storage<Eigen::half>)->Apply(prefill_shapes);

int main(int argc, char** argv) { return salt::bench::benchmark_main(argc, argv, fma_peak_gflops); }
