// LSH attention (Reformer) benchmarks: time against sequence length with a complexity fit, GFLOP/s from the
// pairs its softmaxes hold (4 d FLOPs each), the fraction of the in-run FMA peak, time per visited pair against
// the sliding-window kernel's at the same length (measured alternately in the same run), and the error against
// exact attention as the number of hash rounds grows, on inputs whose keys cluster, and how one long head scales
// with threads.
//
//   build/benchmarks/salt_lsh_bench --benchmark_filter=lsh
#include <benchmark/benchmark.h>

#include <salt/salt.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "common/alloc_counter.hpp"
#include "common/benchmark_main.hpp"
#include "common/approximations.hpp"
#include "common/fma_peak.hpp"
#include "common/problem.hpp"

namespace {

using salt::index;
using salt::bench::reformer_options;
double fma_peak_gflops = 0;  // one core, measured in main() before any benchmark

/// The sliding window with the same keys per query as one LSH round (chunk 64, one before): 128.
salt::sliding_window window_like_lsh(bool causal) {
  return causal ? salt::sliding_window{.left = 127} : salt::sliding_window{.left = 64, .right = 63};
}

double seconds_of(const auto& call) {
  const auto t0 = std::chrono::steady_clock::now();
  call();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// args (L, rounds, causal): LSH attention on (1, 1, L, 64), one thread; counters GFLOP/s, peak_frac, ns/pair.
void BM_lsh(benchmark::State& state) {
  const index L = state.range(0), rounds = state.range(1);
  const bool causal = state.range(2) != 0;
  salt::bench::attention_inputs in(1, 1, 1, L, L, 64);
  const auto opt = reformer_options(L, rounds, causal);
  const auto rot = salt::lsh_rotations<float>::gaussian(1, 64, opt, 7);
  const salt::run_options run{.threads = 1};
  auto call = [&] { salt::lsh_attention<float>(in.qv(), in.vv(), in.ov(), rot, opt, salt::no_mask{}, run); };
  call();  // warm up
  salt::bench::reset_alloc_stats();
  double seconds = 0;
  for (auto _ : state) {
    seconds += seconds_of(call);
    benchmark::DoNotOptimize(in.out.data());
    benchmark::ClobberMemory();
  }
  const auto alloc = salt::bench::read_alloc_stats();
  const double per_call = seconds / static_cast<double>(state.iterations());
  const double pairs = salt::lsh_visited_pairs(L, opt), gflops = 4.0 * 64 * pairs / per_call * 1e-9;
  state.SetComplexityN(L);
  state.counters["GFLOP/s"] = gflops;
  state.counters["peak_frac"] = gflops / fma_peak_gflops;
  state.counters["ns/pair"] = per_call / pairs * 1e9;
  state.counters["buckets"] = static_cast<double>(opt.buckets());
  state.counters["alloc_B/call"] = static_cast<double>(alloc.bytes) / static_cast<double>(state.iterations());
}

/// args (L, causal): LSH (one round) and the sliding window of the same width, timed alternately (median of
/// the repetitions), one thread; pair_cost_vs_window = LSH's time per visited pair over the window's.
void BM_lsh_pair_cost_vs_window(benchmark::State& state) {
  const index L = state.range(0);
  const bool causal = state.range(1) != 0;
  salt::bench::attention_inputs in(1, 1, 1, L, L, 64);
  const auto opt = reformer_options(L, 1, causal);
  const auto rot = salt::lsh_rotations<float>::gaussian(1, 64, opt, 7);
  const auto window = window_like_lsh(causal);
  const salt::run_options run{.threads = 1};
  const double lsh_pairs = salt::lsh_visited_pairs(L, opt);
  const double window_pairs = static_cast<double>(salt::plan_work<float>(window, in.dims()).visited_pairs);
  auto lsh = [&] { salt::lsh_attention<float>(in.qv(), in.vv(), in.ov(), rot, opt, salt::no_mask{}, run); };
  auto win = [&] { salt::attention(in.qv(), in.kv(), in.vv(), in.ov(), window, salt::dot_product{}, run); };
  lsh();
  win();
  std::vector<double> a, b;
  for (auto _ : state) {
    a.push_back(seconds_of(lsh) / lsh_pairs);
    b.push_back(seconds_of(win) / window_pairs);
    benchmark::DoNotOptimize(in.out.data());
  }
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  const double la = a[a.size() / 2], wb = b[b.size() / 2];
  state.counters["lsh_ns/pair"] = la * 1e9;
  state.counters["window_ns/pair"] = wb * 1e9;
  state.counters["pair_cost_vs_window"] = la / wb;
}

/// The median of `runs` timings of call(), in seconds.
double median_seconds(const auto& call, int runs) {
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) t.push_back(seconds_of(call));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

/// args (L, causal): how one head's call scales with threads: LSH (2 rounds) on (1, 1, L, 64) at 1 thread and
/// at every thread OpenMP offers, timed alternately (medians of 3 per iteration, the best iteration of each).
/// One head is the hard case: its hashing, gathering and merging must split into blocks of positions to use
/// more than one thread. Counters: ms at 1 and at N threads, threads, speedup = t(1) / t(N), efficiency.
void BM_lsh_one_head_threads(benchmark::State& state) {
  const index L = state.range(0);
  const bool causal = state.range(1) != 0;
#if defined(_OPENMP)
  const int many = omp_get_max_threads();
#else
  const int many = 1;
#endif
  salt::bench::attention_inputs in(1, 1, 1, L, L, 64);
  const auto opt = reformer_options(L, 2, causal);
  const auto rot = salt::lsh_rotations<float>::gaussian(1, 64, opt, 7);
  auto with = [&](int threads) {
    return [&, threads] {
      salt::lsh_attention<float>(in.qv(), in.vv(), in.ov(), rot, opt, salt::no_mask{},
                                 salt::run_options{.threads = threads});
    };
  };
  const auto one = with(1), all = with(many);
  one();  // warm up: the workspace of this thread grows once
  all();
  double best_one = 1e300, best_all = 1e300;
  for (auto _ : state) {
    best_one = std::min(best_one, median_seconds(one, 3));
    best_all = std::min(best_all, median_seconds(all, 3));
    benchmark::DoNotOptimize(in.out.data());
    benchmark::ClobberMemory();
  }
  state.counters["ms_1_thread"] = best_one * 1e3;
  state.counters["ms_N_threads"] = best_all * 1e3;
  state.counters["threads"] = many;
  state.counters["speedup"] = best_one / best_all;
  state.counters["efficiency"] = best_one / best_all / many;
}

/// args (L): where one head's time goes, step by step (lsh/attention.hpp's five steps, called as it calls them),
/// at 1 thread and at every thread OpenMP offers: counters <step>_1 and <step>_N in ms (medians of 5), and
/// <step>_speedup. The step whose speed-up lags is what caps BM_lsh_one_head_threads.
void BM_lsh_steps(benchmark::State& state) {
  namespace d = salt::detail;
  const index L = state.range(0);
#if defined(_OPENMP)
  const int many = omp_get_max_threads();
#else
  const int many = 1;
#endif
  salt::bench::attention_inputs in(1, 1, 1, L, L, 64);
  const auto opt = reformer_options(L, 2, false);
  const auto rot = salt::lsh_rotations<float>::gaussian(1, 64, opt, 7);
  const salt::tensor_view<const float> qk = in.qv(), v = in.vv();
  const d::lsh_shape s = d::lsh_shape::of(qk, v.features, opt);
  d::lsh_workspace<float>& ws = d::lsh_workspace<float>::for_this_thread();
  ws.reserve(s.all_heads() * s.rows, s.d, s.dv);
  const salt::no_mask padding;
  const d::lsh_keys<salt::no_mask> keys{padding, s.L};
  const char* names[] = {"hash", "sort", "gather", "attend", "merge"};
  auto step = [&](int which, int threads) {
    switch (which) {
      case 0: return d::lsh_hash(qk, rot, opt, s, keys, ws, threads);
      case 1: return d::lsh_sort(s, keys, opt, ws, threads);
      case 2: return d::lsh_gather(qk, v, s, ws, threads);
      case 3: return d::lsh_attend(s, opt, keys.any_missing(s), ws, threads);
      default: return d::lsh_merge(in.ov(), salt::lse_view<float>{}, s, ws, threads);
    }
  };
  double t[5][2] = {};
  for (auto _ : state) {
    for (int which = 0; which < 5; ++which)
      for (int k = 0; k < 2; ++k) {
        const int threads = k == 0 ? 1 : many;
        std::vector<double> runs;
        for (int r = 0; r < 5; ++r) runs.push_back(seconds_of([&] { step(which, threads); }));
        std::sort(runs.begin(), runs.end());
        t[which][k] = runs[2];
      }
    benchmark::DoNotOptimize(in.out.data());
  }
  for (int which = 0; which < 5; ++which) {
    state.counters[std::string(names[which]) + "_1"] = t[which][0] * 1e3;
    state.counters[std::string(names[which]) + "_N"] = t[which][1] * 1e3;
    state.counters[std::string(names[which]) + "_speedup"] = t[which][0] / t[which][1];
  }
  state.counters["threads"] = many;
}

/// args (L, rounds): error of LSH attention against exact attention over the same scores (shared QK, keys
/// normalised as LSH normalises them, the self pair left out), on clustered inputs: 64 centres, noise 0.5, d 64.
/// Counters: rel_err = ||out - exact||_F / ||exact||_F, max_err = max |out - exact|.
void BM_lsh_rounds_error(benchmark::State& state) {
  const index L = state.range(0), rounds = state.range(1), d = 64;
  const salt::bench::clustered_problem p(L, d);
  const auto opt = reformer_options(L, rounds, false);
  const auto rot = salt::lsh_rotations<float>::gaussian(1, d, opt, 7);
  salt::row_matrix<float> out;
  for (auto _ : state) {
    out = salt::lsh_attention(p.qk, p.v, rot, opt);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["rel_err"] = salt::bench::relative_error(out, p.exact);
  state.counters["max_err"] = static_cast<double>((out - p.exact).cwiseAbs().maxCoeff());
  state.counters["pairs_frac_of_dense"] = salt::lsh_visited_pairs(L, opt) / static_cast<double>(L * L);
}

void lengths(benchmark::internal::Benchmark* b, index rounds, int causal) {
  for (index L = 1024; L <= 262144; L *= 2) b->Args({L, rounds, causal});
  b->Unit(benchmark::kMillisecond)->Complexity(benchmark::oNLogN)->UseRealTime();
}

}  // namespace

BENCHMARK(BM_lsh)->Name("BM_lsh/rounds=2")->Apply([](auto* b) { lengths(b, 2, 0); });
BENCHMARK(BM_lsh)->Name("BM_lsh_causal/rounds=2")->Apply([](auto* b) { lengths(b, 2, 1); });
BENCHMARK(BM_lsh_pair_cost_vs_window)->Args({65536, 0})->Args({65536, 1})->Iterations(7)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_lsh_one_head_threads)->Args({16384, 0})->Args({16384, 1})->Iterations(3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_lsh_steps)->Arg(16384)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_lsh_rounds_error)
    ->ArgsProduct({{4096}, {1, 2, 4, 8}})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) { return salt::bench::benchmark_main(argc, argv, fma_peak_gflops); }
