// Google Benchmark suite of the exact engine's backward pass (attention_backward.hpp): its time against the
// forward's on the same inputs, timed alternately in one run (backward_over_forward; FlashAttention-2's is about
// 2.5), GFLOP/s counting 2.5 times the forward's FLOPs (the five products of the backward against the forward's
// two) and its fraction of the FMA peak measured in the same run, the cost per visited pair of sparse masks
// against dense backward's, the speed-up of every thread over one, and what a shared table's gradient adds.
//
//   build/benchmarks/salt_backward_bench --benchmark_filter=dense   (see README: Benchmarks)
#include <benchmark/benchmark.h>

#include <salt/salt.hpp>

#include <chrono>
#include <map>
#include <vector>

#include "common/benchmark_main.hpp"
#include "common/problem.hpp"
#include "common/sparse_setups.hpp"
#include "common/thread_speedup.hpp"

namespace {

using salt::index;
double fma_peak_gflops = 0;  // one core, measured in main() before any benchmark

/// A forward's inputs with its output, LSE and an output gradient, and the gradients' buffers.
struct backward_inputs : salt::bench::attention_inputs {
  std::vector<float> lse, dout, dq, dk, dv;
  backward_inputs(index heads, index L, index d) : attention_inputs(1, heads, heads, L, L, d) {
    lse.assign(static_cast<std::size_t>(heads * L), 0.0f);
    dout = q;  // any values of the output's shape (d = dv here)
    dq.assign(q.size(), 0.0f), dk.assign(k.size(), 0.0f), dv.assign(v.size(), 0.0f);
  }
  salt::lse_view<float> lse_out() { return salt::lse_view<float>::bht(lse.data(), heads, lq); }
  template <class Mask, class Score = salt::dot_product>
  void forward(const Mask& mask, int threads, const Score& score = {}) {
    salt::attention(qv(), kv(), vv(), ov(), lse_out(), mask, score, {.threads = threads});
  }
  /// The backward; with a logit gradient, the table's gradient too.
  template <class Mask, class Score = salt::dot_product, class... Table>
  void backward(const Mask& mask, int threads, const Score& score = {}, const Table&... dtable) {
    using cv = salt::tensor_view<const float>;
    using mv = salt::tensor_view<float>;
    salt::attention_backward<float>(qv(), kv(), vv(), cv::bhld(out.data(), 1, heads, lq, d),
                                    salt::lse_view<const float>::bht(lse.data(), heads, lq),
                                    cv::bhld(dout.data(), 1, heads, lq, d), mv::bhld(dq.data(), 1, heads, lq, d),
                                    mv::bhld(dk.data(), 1, heads, lk, d), mv::bhld(dv.data(), 1, heads, lk, d), mask,
                                    score, {.threads = threads}, dtable...);
  }
};

using salt::bench::seconds_of;

/// Backward and forward of `mask` on (1, heads, L, 64), alternately, on `threads` threads: medians of both,
/// their ratio, GFLOP/s of the backward counting 2.5 x 4 d per visited pair, its peak fraction, ns per pair.
template <class Mask>
double run_backward(benchmark::State& state, const Mask& mask, index heads = 1) {
  const index L = state.range(0), d = 64;
  const int threads = static_cast<int>(state.range(1));
  backward_inputs in(heads, L, d);
  const double pairs = static_cast<double>(salt::plan_work<float>(mask, in.dims()).visited_pairs);
  in.forward(mask, threads);
  in.backward(mask, threads);  // warm-up: pages, the thread pool
  std::vector<double> fwd, bwd;
  for (auto _ : state) {
    fwd.push_back(seconds_of([&] { in.forward(mask, threads); }));
    bwd.push_back(seconds_of([&] { in.backward(mask, threads); }));
  }
  const double f = salt::bench::median_of(fwd), b = salt::bench::median_of(bwd);
  const double gflops = 2.5 * 4.0 * pairs * static_cast<double>(d) / b * 1e-9;
  state.counters["backward_ms"] = b * 1e3;
  state.counters["forward_ms"] = f * 1e3;
  state.counters["backward_over_forward"] = b / f;
  state.counters["GFLOP/s"] = gflops;
  state.counters["peak_frac"] = gflops / (fma_peak_gflops * threads);
  state.counters["ns/pair"] = b / pairs * 1e9;
  return b / pairs;
}

/// Dense backward's seconds per pair at each L (one thread), for the sparse benchmarks' ratio.
double dense_seconds_per_pair(index L) {
  static std::map<index, double> cache;
  if (auto it = cache.find(L); it != cache.end()) return it->second;
  backward_inputs in(1, L, 64);
  in.forward(salt::no_mask{}, 1);
  double best = 1e30;
  for (int r = 0; r < 3; ++r) best = std::min(best, seconds_of([&] { in.backward(salt::no_mask{}, 1); }));
  return cache[L] = best / (static_cast<double>(L) * static_cast<double>(L));
}

void BM_backward_dense(benchmark::State& s) { run_backward(s, salt::no_mask{}); }
void BM_backward_causal(benchmark::State& s) { run_backward(s, salt::causal{}); }
void BM_backward_gqa_heads(benchmark::State& s) { run_backward(s, salt::causal{}, 8); }

template <class MakeMask>
void run_sparse_backward(benchmark::State& s, MakeMask make_mask) {
  const double per_pair = run_backward(s, make_mask(s.range(0)));
  s.counters["pair_cost_vs_dense"] = per_pair / dense_seconds_per_pair(s.range(0));
}
void BM_backward_sliding_window(benchmark::State& s) {
  run_sparse_backward(s, [](index) { return salt::bench::local_window(); });
}
void BM_backward_bigbird(benchmark::State& s) { run_sparse_backward(s, salt::bench::bigbird_mask); }

/// One head's backward on every hardware thread against one, alternating (thread_speedup.hpp).
void BM_backward_thread_scaling(benchmark::State& state) {
  const index L = state.range(0);
  backward_inputs in(1, L, 64);
  in.forward(salt::no_mask{}, 1);
  salt::bench::speedup_sample sample;
  for (auto _ : state) sample = salt::bench::thread_speedup([&](int threads) { in.backward(salt::no_mask{}, threads); }, 7);
  sample.report(state);
}

/// What a table's gradient costs: 8 causal heads of L tokens under dot product + one (L, L) bias table shared by
/// all, the backward without and with the table's gradient (gradient_into: the key partitions then walk every head
/// in order), alternated on arg threads. Counters: with_over_without (median of the pairs' ratios), ms of each.
void BM_backward_table_gradient(benchmark::State& state) {
  const index L = state.range(0), heads = 8;
  const int threads = static_cast<int>(state.range(1));
  backward_inputs in(heads, L, 64);
  const salt::row_matrix<float> table = 0.5f * salt::row_matrix<float>::Random(L, L);
  salt::row_matrix<float> dtable = salt::row_matrix<float>::Zero(L, L);
  const auto bias = salt::bias_table<float>::shared(table);
  const auto score = salt::dot_product{} + bias;
  in.forward(salt::causal{}, threads, score);
  const auto without = [&] { in.backward(salt::causal{}, threads, score); };
  const auto with = [&] { in.backward(salt::causal{}, threads, score, bias.gradient_into(dtable.data())); };
  without(), with();  // warm-up
  std::vector<double> a, b, ratio;
  for (auto _ : state) {
    for (int r = 0; r < 5; ++r) {
      a.push_back(seconds_of(without));
      b.push_back(seconds_of(with));
      ratio.push_back(b.back() / a.back());
    }
  }
  state.counters["with_over_without"] = salt::bench::median_of(ratio);
  state.counters["ms_without"] = salt::bench::median_of(a) * 1e3;
  state.counters["ms_with"] = salt::bench::median_of(b) * 1e3;
}

void lengths(benchmark::internal::Benchmark* b, index from, index to, int threads) {
  for (index L = from; L <= to; L *= 2) b->Args({L, threads});
  b->Unit(benchmark::kMillisecond)->UseManualTime()->Iterations(5);
}

BENCHMARK(BM_backward_dense)->Apply([](auto* b) {
  lengths(b, 1024, 4096, 1);
  if (salt::bench::all_threads() > 1) lengths(b, 4096, 4096, salt::bench::all_threads());
});
BENCHMARK(BM_backward_causal)->Apply([](auto* b) {
  lengths(b, 1024, 4096, 1);
  if (salt::bench::all_threads() > 1) lengths(b, 4096, 4096, salt::bench::all_threads());
});
BENCHMARK(BM_backward_gqa_heads)->Apply([](auto* b) { lengths(b, 1024, 1024, 1); });
BENCHMARK(BM_backward_sliding_window)->Apply([](auto* b) { lengths(b, 4096, 16384, 1); });
BENCHMARK(BM_backward_bigbird)->Apply([](auto* b) { lengths(b, 4096, 16384, 1); });
BENCHMARK(BM_backward_table_gradient)->Apply([](auto* b) {
  b->Args({2048, 1});
  if (salt::bench::all_threads() > 1) b->Args({2048, salt::bench::all_threads()});
  b->Unit(benchmark::kMillisecond)->Iterations(1);
});
BENCHMARK(BM_backward_thread_scaling)->Arg(4096)->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace

int main(int argc, char** argv) { return salt::bench::benchmark_main(argc, argv, fma_peak_gflops); }
