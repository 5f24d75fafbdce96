// Google Benchmark suite of the exact engine, templated on the mask policy: time against sequence length
// with a complexity fit, GFLOP/s from the FLOPs the kernel must do, the fraction of this machine's FMA
// peak measured in the same run, time per visited pair, and bytes allocated per call.
//
//   build/benchmarks/salt_bench --benchmark_filter=dense   (see README: Benchmarks)
#include <benchmark/benchmark.h>

#include <salt/salt.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "common/alloc_counter.hpp"
#include "common/benchmark_main.hpp"
#include "common/fma_peak.hpp"
#include "common/parameter_setups.hpp"
#include "common/problem.hpp"
#include "common/thread_speedup.hpp"
#include "common/sparse_setups.hpp"

namespace {

using salt::index;
double fma_peak_gflops = 0;  // one core, measured in main() before any benchmark

/// How many FLOPs a call must do: 2 d + 2 dv per attended pair. For dense and causal this is the usual
/// 4 Lq Lk d (halved for causal); sparse masks count the pairs their plan visits.
using flop_rule = std::function<double(const salt::bench::attention_inputs&)>;

double dense_flops(const salt::bench::attention_inputs& in) {
  return 4.0 * static_cast<double>(in.batch * in.heads) * static_cast<double>(in.lq) * static_cast<double>(in.lk) *
         static_cast<double>(in.d);
}

template <class Mask>
flop_rule visited_pairs_flops(Mask mask) {
  return [mask](const salt::bench::attention_inputs& in) {
    return 4.0 * static_cast<double>(salt::plan_work<float>(mask, in.dims()).visited_pairs) * static_cast<double>(in.d);
  };
}

/// Times `call(in)` on (batch, heads, L, d) inputs and reports the counters: GFLOP/s from `flops`, its
/// fraction of the in-run peak, time per pair when `pairs` > 0, and the bytes the calls allocate.
template <class Call>
void time_calls(benchmark::State& state, salt::bench::attention_inputs& in, const Call& call, double flops,
                double pairs, int threads) {
  call(in);  // warm up
  salt::bench::reset_alloc_stats();
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    call(in);
    benchmark::DoNotOptimize(in.out.data());
    benchmark::ClobberMemory();
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const auto alloc = salt::bench::read_alloc_stats();
  const double per_call = seconds / static_cast<double>(state.iterations());
  const double gflops = flops / per_call * 1e-9;
  state.SetComplexityN(in.lq);
  state.counters["GFLOP/s"] = gflops;
  state.counters["peak_frac"] = gflops / (fma_peak_gflops * threads);
  if (pairs > 0) state.counters["ns/pair"] = per_call / pairs * 1e9;
  state.counters["alloc_B/call"] = static_cast<double>(alloc.bytes) / static_cast<double>(state.iterations());
  state.counters["peak_alloc_B"] = static_cast<double>(alloc.peak_live);
}

/// Runs `mask` on (batch, heads, L, d) with `threads` threads and reports the counters.
template <class Mask, class Score = salt::dot_product>
void run_attention(benchmark::State& state, const Mask& mask, const flop_rule& flops, index heads = 1, index d = 64,
                   const Score& score = {}) {
  const index L = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  salt::bench::attention_inputs in(1, heads, heads, L, L, d);
  const salt::run_options opts{.threads = threads};
  const auto pairs = static_cast<double>(salt::plan_work<float>(mask, in.dims()).visited_pairs);
  time_calls(
      state, in,
      [&](salt::bench::attention_inputs& x) { salt::attention(x.qv(), x.kv(), x.vv(), x.ov(), mask, score, opts); },
      flops(in), pairs, threads);
}

/// Lengths from..to (doubling), with a complexity fit: `growth` names the expected order (its RMS says how
/// well it fits); oAuto lets Google Benchmark pick.
void sequence_lengths(benchmark::internal::Benchmark* b, index from, index to, int threads,
                      benchmark::BigO growth = benchmark::oAuto) {
  for (index L = from; L <= to; L *= 2) b->Args({L, threads});
  b->Unit(benchmark::kMillisecond)->Complexity(growth)->UseRealTime();
}

void BM_fma_peak(benchmark::State& state) {
  for (auto _ : state) state.SetIterationTime(1.0);
  state.counters["GFLOP/s"] = fma_peak_gflops;
}

void BM_dense(benchmark::State& state) { run_attention(state, salt::no_mask{}, dense_flops); }
void BM_causal(benchmark::State& state) {
  run_attention(state, salt::causal{}, [](const auto& in) { return dense_flops(in) / 2; });
}

/// Dense attention's time per pair on one thread at length L (at most 8192: beyond, the dense kernel's cost
/// per pair no longer changes and a dense run would take minutes). Measured once per length, in this run.
double dense_ns_per_pair(index L) {
  static std::map<index, double> cache;
  L = std::min<index>(L, 8192);
  if (auto it = cache.find(L); it != cache.end()) return it->second;
  salt::bench::attention_inputs in(1, 1, 1, L, L, 64);
  double best = 1e30;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    salt::attention(in.qv(), in.kv(), in.vv(), in.ov(), salt::no_mask{}, salt::dot_product{}, {.threads = 1});
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return cache[L] = best / static_cast<double>(L * L) * 1e9;
}

/// A sparse pattern: its own counters, plus its time per visited pair over dense attention's.
template <class MakeMask>
void run_sparse(benchmark::State& state, MakeMask make_mask) {
  const index L = state.range(0);
  const auto mask = make_mask(L);
  run_attention(state, mask, visited_pairs_flops(mask));
  state.counters["pair_cost_vs_dense"] = state.counters["ns/pair"] / dense_ns_per_pair(L);
}

void BM_sliding_window(benchmark::State& s) { run_sparse(s, [](index) { return salt::bench::local_window(); }); }
void BM_longformer(benchmark::State& s) { run_sparse(s, salt::bench::longformer); }
void BM_bigbird(benchmark::State& s) { run_sparse(s, salt::bench::bigbird_mask); }
void BM_block_layout(benchmark::State& s) { run_sparse(s, salt::bench::layout_mask); }
void BM_segments(benchmark::State& s) { run_sparse(s, salt::bench::segments_mask); }

/// Causal attention of a batch item whose second half is query padding: padded queries should cost nothing,
/// so the time per visited pair stays causal attention's (pair_cost_vs_dense about 1).
void BM_query_padding(benchmark::State& s) {
  static std::vector<index> lengths(1);  // viewed by the mask for the whole run
  lengths[0] = s.range(0) / 2;
  run_sparse(s, [](index) { return salt::causal{} & salt::query_padding{lengths}; });
}

/// A relative-position bias as one elementwise_score function, beside dense attention with no score: the
/// cost of applying f to every visited logit (pair_cost_vs_dense - 1).
void BM_elementwise_score(benchmark::State& s) {
  const auto relative = salt::elementwise_score{[](auto logit, index, index, index q, index k) {
    using S = decltype(logit);
    return logit - S(0.125) * S(static_cast<int>(q > k ? q - k : k - q));
  }};
  run_attention(s, salt::no_mask{}, dense_flops, 1, 64, relative);
  s.counters["pair_cost_vs_dense"] = s.counters["ns/pair"] / dense_ns_per_pair(s.range(0));
}

/// (query, key) pairs the causal Sparse Transformer patterns allow on (L, L): strided{s} & causal sees
/// min(p + 1, s) band keys and floor(p / s) lattice keys; fixed{l, c} & causal its own block's keys up to p and
/// c summaries of each earlier block.
double sparse_transformer_pairs(index pattern, index L, index period, index summary) {
  double pairs = 0;
  for (index p = 0; p < L; ++p)
    pairs += pattern == 0 ? static_cast<double>(std::min(p + 1, period) + p / period)
                          : static_cast<double>(p % period + 1 + summary * (p / period));
  return pairs;
}

/// A causal Sparse Transformer pattern, strided{period} & causal (pattern 0) or fixed{period, 8} & causal
/// (pattern 1), one thread. It runs as two passes merged by LSE, so its counters count the allowed pairs, not
/// a block plan: GFLOP/s at 4 d per pair, ns per allowed pair and that over dense's.
void run_sparse_transformer(benchmark::State& state, index pattern, index period, bool single_pass = false) {
  const index L = state.range(0), summary = 8;
  salt::bench::attention_inputs in(1, 1, 1, L, L, 64);
  const double pairs = sparse_transformer_pairs(pattern, L, period, summary);
  auto call = [&](const auto& mask) {
    time_calls(
        state, in,
        [&](salt::bench::attention_inputs& x) {
          salt::attention(x.qv(), x.kv(), x.vv(), x.ov(), mask, salt::dot_product{}, {.threads = 1});
        },
        4.0 * pairs * static_cast<double>(in.d), pairs, 1);
  };
  // With Lq = Lk the top-left diagonal is the same mask, which the passes do not take: the single pass over
  // its blocks, timed beside them.
  using top_left = salt::causal<salt::causal_alignment::top_left>;
  if (pattern == 0 && !single_pass) call(salt::strided{.stride = period} & salt::causal{});
  if (pattern == 0 && single_pass) call(salt::strided{.stride = period} & top_left{});
  if (pattern == 1 && !single_pass) call(salt::fixed{.block = period, .summary = summary} & salt::causal{});
  if (pattern == 1 && single_pass) call(salt::fixed{.block = period, .summary = summary} & top_left{});
  state.counters["pair_cost_vs_dense"] = state.counters["ns/pair"] / dense_ns_per_pair(L);
}

index sqrt_of(index L) { return static_cast<index>(std::lround(std::sqrt(static_cast<double>(L)))); }
void BM_strided_causal(benchmark::State& s) { run_sparse_transformer(s, 0, 128); }
void BM_fixed_causal(benchmark::State& s) { run_sparse_transformer(s, 1, 128); }
/// The bar of the patterns' O(L sqrt L) cost: period sqrt(L), fitted against L^1.5.
void BM_strided_sqrt(benchmark::State& s) { run_sparse_transformer(s, 0, sqrt_of(s.range(0))); }
void BM_fixed_sqrt(benchmark::State& s) { run_sparse_transformer(s, 1, sqrt_of(s.range(0))); }
void BM_strided_sqrt_single_pass(benchmark::State& s) { run_sparse_transformer(s, 0, sqrt_of(s.range(0)), true); }
void BM_fixed_sqrt_single_pass(benchmark::State& s) { run_sparse_transformer(s, 1, sqrt_of(s.range(0)), true); }

/// Linformer, k = 256 projected keys (shared by keys and values): O(L k d), so linear in L at fixed k.
void BM_linformer(benchmark::State& state) {
  const index L = state.range(0), k = salt::bench::linformer_k;
  salt::bench::attention_inputs in(1, 1, 1, L, L, 64);
  const auto& proj = salt::bench::linformer_for(L, k);
  const double flops = 2.0 * static_cast<double>(k * L * 2 * in.d) + 4.0 * static_cast<double>(L * k * in.d);
  time_calls(
      state, in, [&](salt::bench::attention_inputs& x) { salt::linformer_attention(x.qv(), x.kv(), x.vv(), x.ov(), proj, salt::no_mask{}, {}, {.threads = 1});
      },
      flops, 0, 1);
}

/// Synthesizer Random (an L x L learned table, sliced per tile) and factorized Random (rank 8, R1 R2^T per
/// tile): O(L^2) time, and no L x L buffer (peak_alloc_B stays at the engine's per-thread workspace).
void BM_synthesizer_random(benchmark::State& state) {
  const auto score = salt::synthesizer_random<float>::shared(salt::bench::synthesizer_table_for(state.range(0)));
  run_attention(state, salt::no_mask{}, [](const auto& in) { return dense_flops(in) / 2; }, 1, 64, score);
}
void BM_synthesizer_factorized(benchmark::State& state) {
  const auto& f = salt::bench::synthesizer_factors_for(state.range(0));
  const auto score = salt::synthesizer_factorized<float>::shared(f.r1, f.r2);
  const auto flops = [](const auto& in) {
    return dense_flops(in) / 2 + 2.0 * static_cast<double>(salt::bench::synthesizer_rank * in.lq * in.lk);
  };
  run_attention(state, salt::no_mask{}, flops, 1, 64, score);
}

/// Two threads against one on 8 heads, timed alternately inside one benchmark so that the ratio
/// compares like with like on a shared machine.
void BM_thread_scaling(benchmark::State& state) {
  const index L = state.range(0), heads = 8;
  salt::bench::attention_inputs in(1, heads, heads, L, L, 64);
  auto time_with = [&](int threads) {
    const auto t0 = std::chrono::steady_clock::now();
    salt::attention(in.qv(), in.kv(), in.vv(), in.ov(), salt::no_mask{}, salt::dot_product{}, {.threads = threads});
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  double one = 0, two = 0;
  for (auto _ : state) {
    one += time_with(1);
    two += time_with(2);
  }
  state.counters["speedup_2_over_1"] = one / two;
  state.counters["GFLOP/s_1"] = dense_flops(in) * static_cast<double>(state.iterations()) / one * 1e-9;
  state.counters["GFLOP/s_2"] = dense_flops(in) * static_cast<double>(state.iterations()) / two * 1e-9;
}

/// Seconds of one call of `run(threads)`, best of `repeats`.
template <class Run>
double best_seconds(const Run& run, int threads, int repeats) {
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    run(threads);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

/// One head on every hardware thread against one thread, alternating, for the patterns of the issue's
/// scaling bars: args (pattern, L) with pattern 0 dense, 1 sliding window, 2 BigBird, 3 causal. Counters
/// (thread_speedup.hpp): speedup, the median over 9 alternating pairs of t(1 thread) / t(all threads), and
/// the median times.
void BM_one_head_scaling(benchmark::State& state) {
  const index pattern = state.range(0), L = state.range(1);
  salt::bench::attention_inputs in(1, 1, 1, L, L, 64);
  salt::bench::speedup_sample sample;
  auto measure = [&](const auto& mask) {
    for (auto _ : state)
      sample = salt::bench::thread_speedup(
          [&](int threads) {
            salt::attention(in.qv(), in.kv(), in.vv(), in.ov(), mask, salt::dot_product{}, {.threads = threads});
          },
          9);
  };
  if (pattern == 0) measure(salt::no_mask{});
  if (pattern == 1) measure(salt::bench::local_window());
  if (pattern == 2) measure(salt::bench::bigbird_mask(L));
  if (pattern == 3) measure(salt::causal{});
  sample.report(state);
}

/// A sparse call with a prebuilt salt::block_mask against the same call planning inside: args (pattern, L)
/// with pattern 0 BigBird, 1 Longformer (window | 16 global tokens), 2 a block layout; one thread, the
/// two timed alternately. Reports plan_saving = t(planned in call) / t(prebuilt) and the time to build it.
void BM_block_mask(benchmark::State& state) {
  const index pattern = state.range(0), L = state.range(1);
  salt::bench::attention_inputs in(1, 1, 1, L, L, 64);
  double in_call = 0, prebuilt = 0, build = 0;
  auto measure = [&](const auto& mask) {
    const auto t0 = std::chrono::steady_clock::now();
    const salt::block_mask<float, std::decay_t<decltype(mask)>> planned(mask, in.dims());
    build = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto view = planned.mask();
    auto run = [&](const auto& m) {
      return best_seconds(
          [&](int threads) { salt::attention(in.qv(), in.kv(), in.vv(), in.ov(), m, salt::dot_product{}, {.threads = threads}); },
          1, 3);
    };
    for (auto _ : state) {
      in_call += run(mask);
      prebuilt += run(view);
    }
  };
  if (pattern == 0) measure(salt::bench::bigbird_mask(L));
  if (pattern == 1) measure(salt::bench::longformer(L));
  if (pattern == 2) measure(salt::bench::layout_mask(L));
  state.counters["plan_saving"] = in_call / prebuilt;
  state.counters["ms_in_call"] = in_call / static_cast<double>(state.iterations()) * 1e3;
  state.counters["ms_prebuilt"] = prebuilt / static_cast<double>(state.iterations()) * 1e3;
  state.counters["ms_build"] = build * 1e3;
}

/// Side by side with PyTorch's CPU scaled_dot_product_attention (benchmarks/peers/torch_sdpa.py), on
/// the same shapes: args (L, threads, heads, causal).
void BM_peer_shapes(benchmark::State& state) {
  const bool causal = state.range(3) != 0;
  const index heads = state.range(2);
  if (causal) {
    run_attention(state, salt::causal{}, [](const auto& in) { return dense_flops(in) / 2; }, heads);
  } else {
    run_attention(state, salt::no_mask{}, dense_flops, heads);
  }
}

/// Extra memory at long sequences: one causal call at L = 65,536 (the peak of live bytes it allocates).
void BM_memory(benchmark::State& state) {
  run_attention(state, salt::causal{}, [](const auto& in) { return dense_flops(in) / 2; });
}

}  // namespace

BENCHMARK(BM_fma_peak)->UseManualTime()->Iterations(1);
BENCHMARK(BM_dense)->Apply([](auto* b) { sequence_lengths(b, 512, 16384, 1, benchmark::oNSquared); });
BENCHMARK(BM_causal)->Apply([](auto* b) { sequence_lengths(b, 512, 16384, 1, benchmark::oNSquared); });
BENCHMARK(BM_sliding_window)->Apply([](auto* b) { sequence_lengths(b, 1024, 262144, 1, benchmark::oN); });
BENCHMARK(BM_longformer)->Apply([](auto* b) { sequence_lengths(b, 1024, 262144, 1, benchmark::oN); });
BENCHMARK(BM_bigbird)->Apply([](auto* b) { sequence_lengths(b, 1024, 262144, 1, benchmark::oN); });
BENCHMARK(BM_block_layout)->Apply([](auto* b) { sequence_lengths(b, 1024, 262144, 1, benchmark::oN); });
BENCHMARK(BM_segments)->Apply([](auto* b) { sequence_lengths(b, 1024, 262144, 1, benchmark::oN); });
BENCHMARK(BM_query_padding)->Apply([](auto* b) { sequence_lengths(b, 1024, 16384, 1, benchmark::oNSquared); });
BENCHMARK(BM_elementwise_score)->Apply([](auto* b) { sequence_lengths(b, 1024, 8192, 1, benchmark::oNSquared); });
BENCHMARK(BM_strided_causal)->Apply([](auto* b) { sequence_lengths(b, 1024, 32768, 1); });
BENCHMARK(BM_fixed_causal)->Apply([](auto* b) { sequence_lengths(b, 1024, 32768, 1); });
BENCHMARK(BM_strided_sqrt)->Apply([](auto* b) {
  sequence_lengths(b, 16384, 262144, 1);
  b->Complexity([](benchmark::IterationCount n) { return std::pow(static_cast<double>(n), 1.5); });
});
BENCHMARK(BM_fixed_sqrt)->Apply([](auto* b) {
  sequence_lengths(b, 16384, 262144, 1);
  b->Complexity([](benchmark::IterationCount n) { return std::pow(static_cast<double>(n), 1.5); });
});
BENCHMARK(BM_strided_sqrt_single_pass)->Apply([](auto* b) { sequence_lengths(b, 16384, 65536, 1); });
BENCHMARK(BM_fixed_sqrt_single_pass)->Apply([](auto* b) { sequence_lengths(b, 16384, 65536, 1); });
BENCHMARK(BM_linformer)->Apply([](auto* b) { sequence_lengths(b, 1024, 262144, 1, benchmark::oN); });
BENCHMARK(BM_synthesizer_random)->Apply([](auto* b) { sequence_lengths(b, 512, 8192, 1, benchmark::oNSquared); });
BENCHMARK(BM_synthesizer_factorized)->Apply([](auto* b) { sequence_lengths(b, 512, 16384, 1, benchmark::oNSquared); });
BENCHMARK(BM_thread_scaling)->Arg(4096)->Unit(benchmark::kMillisecond)->Iterations(5);
BENCHMARK(BM_one_head_scaling)
    ->Args({0, 4096})
    ->Args({3, 4096})
    ->Args({1, 16384})
    ->Args({2, 16384})
    ->ArgNames({"pattern", "L"})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
BENCHMARK(BM_block_mask)
    ->ArgsProduct({{0, 1, 2}, {4096, 65536}})
    ->ArgNames({"pattern", "L"})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);
BENCHMARK(BM_peer_shapes)
    ->ArgsProduct({{4096}, {1, 16}, {1, 8}, {0, 1}})
    ->ArgNames({"L", "threads", "heads", "causal"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_memory)->Args({65536, 2})->Unit(benchmark::kSecond)->Iterations(1)->UseRealTime();

int main(int argc, char** argv) { return salt::bench::benchmark_main(argc, argv, fma_peak_gflops); }
