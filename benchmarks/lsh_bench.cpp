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

#include "common/alloc_counter.hpp"
#include "common/benchmark_main.hpp"
#include "common/approximations.hpp"
#include "common/fma_peak.hpp"
#include "common/problem.hpp"
#include "common/thread_speedup.hpp"

namespace {

using salt::index;
using salt::bench::reformer_options;
double fma_peak_gflops = 0;  // one core, measured in main() before any benchmark

/// The sliding window with the same keys per query as one LSH round (chunk 64, one before): 128.
salt::sliding_window window_like_lsh(bool causal) {
  return causal ? salt::sliding_window{.left = 127} : salt::sliding_window{.left = 64, .right = 63};
}

using salt::bench::seconds_of;

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

/// args (L, causal): how one head's call scales with threads: LSH (2 rounds) on (1, 1, L, 64), 1 thread against
/// every thread OpenMP offers (thread_speedup.hpp: the median of 9 alternating pairs). One head is the hard
/// case: its hashing, gathering and merging must split into blocks of positions to use more than one thread.
/// Counters: ms_1, ms_all, threads, speedup = t(1) / t(all), efficiency = speedup / threads.
void BM_lsh_one_head_threads(benchmark::State& state) {
  const index L = state.range(0);
  const bool causal = state.range(1) != 0;
  salt::bench::attention_inputs in(1, 1, 1, L, L, 64);
  const auto opt = reformer_options(L, 2, causal);
  const auto rot = salt::lsh_rotations<float>::gaussian(1, 64, opt, 7);
  salt::bench::speedup_sample sample;
  for (auto _ : state)
    sample = salt::bench::thread_speedup(
        [&](int threads) {
          salt::lsh_attention<float>(in.qv(), in.vv(), in.ov(), rot, opt, salt::no_mask{}, {.threads = threads});
        },
        9);
  sample.report(state);
  state.counters["efficiency"] = sample.speedup / sample.threads;
}

/// args (L): where one head's time goes, step by step (lsh/attention.hpp's five steps, called as it calls them),
/// each timed on 1 thread against all (thread_speedup.hpp): counters <step>_ms_1, <step>_ms_all and
/// <step>_speedup. The step whose speed-up lags, or the time the steps do not add up to, caps
/// BM_lsh_one_head_threads.
void BM_lsh_steps(benchmark::State& state) {
  namespace d = salt::detail;
  const index L = state.range(0);
  salt::bench::attention_inputs in(1, 1, 1, L, L, 64);
  const auto opt = reformer_options(L, 2, false);
  const auto rot = salt::lsh_rotations<float>::gaussian(1, 64, opt, 7);
  const salt::tensor_view<const float> qk = in.qv(), v = in.vv();
  const d::lsh_shape s = d::lsh_shape::of(qk, v.features, opt);
  d::lsh_workspace<float>& ws = d::lsh_workspace<float>::for_this_thread();
  ws.reserve(s.all_heads() * s.rows, s.d, s.dv);
  const salt::no_mask padding;
  const d::lsh_keys<salt::no_mask> keys{padding, s.L};
  const auto hash = [&](int threads) { d::lsh_hash(qk, rot, opt, s, keys, ws, threads); };
  const auto sort = [&](int threads) { d::lsh_sort(s, keys, opt, ws, threads); };
  const auto gather = [&](int threads) { d::lsh_gather(qk, v, s, ws, threads); };
  const auto attend = [&](int threads) { d::lsh_attend(s, opt, keys.any_missing(s), ws, threads); };
  const auto merge = [&](int threads) { d::lsh_merge(in.ov(), salt::lse_view<float>{}, s, ws, threads); };
  for (auto _ : state) {
    salt::bench::thread_speedup(hash, 7).report(state, "hash");
    salt::bench::thread_speedup(sort, 7).report(state, "sort");
    salt::bench::thread_speedup(gather, 7).report(state, "gather");
    salt::bench::thread_speedup(attend, 7).report(state, "attend");
    salt::bench::thread_speedup(merge, 7).report(state, "merge");
  }
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
BENCHMARK(BM_lsh_one_head_threads)->Args({16384, 0})->Args({16384, 1})->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_lsh_steps)->Arg(16384)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_lsh_rounds_error)
    ->ArgsProduct({{4096}, {1, 2, 4, 8}})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) { return salt::bench::benchmark_main(argc, argv, fma_peak_gflops); }
