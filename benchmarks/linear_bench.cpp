// Google Benchmark suite of kernelized linear attention (include/salt/linear/): time against sequence
// length with O(N) fits for the non-causal and chunked causal forms of every feature map, GFLOP/s and the
// fraction of this core's FMA peak measured in the same run, the chunk-size sweep of the causal form,
// streaming decode tokens/s, the error against exact softmax attention as the number of features grows, and the
// backward (linear_backward.hpp): its time against the forward's, alternated in one run, its fraction of the
// peak, and its speed-up on every thread over one.
//
//   build/benchmarks/salt_linear_bench --benchmark_filter=causal_chunk
//
// FLOPs: salt::bench::linear_flops and linear_backward_flops (common/approximations.hpp), counted as performed.
#include <benchmark/benchmark.h>

#include <salt/salt.hpp>

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
double fma_peak_gflops = 0;  // one core, measured in main() before any benchmark

constexpr index d = 64;

enum class map_kind { favor_plus, favor_trig, relu, elu };

const char* name_of(map_kind k) {
  switch (k) {
    case map_kind::favor_plus: return "favor_plus";
    case map_kind::favor_trig: return "favor_trig";
    case map_kind::relu: return "relu";
    case map_kind::elu: return "elu_plus_one";
  }
  return "?";
}

/// Runs `f(map, m, p)` with the map of kind k: FAVOR+ with m = 256 orthogonal features, trig with 128
/// (256 features), ReLU with 256 projected features, elu + 1 (d features).
template <class F>
void with_map(map_kind k, F&& f) {
  const auto w = [](index m) { return salt::random_features<float>::orthogonal(m, d, 42); };
  switch (k) {
    case map_kind::favor_plus: return f(salt::favor_plus<float>(w(256)), index{256}, index{256});
    case map_kind::favor_trig: return f(salt::favor_trig<float>(w(128)), index{256}, index{128});
    case map_kind::relu: return f(salt::relu_features<float>(w(256)), index{256}, index{256});
    case map_kind::elu: return f(salt::elu_plus_one{}, d, index{0});
  }
}

/// One head of length L, one thread, non-causal or causal with the given chunk; reports the counters.
template <class Map>
void run_linear(benchmark::State& state, const Map& map, index m, index p, bool causal, index chunk) {
  const index L = state.range(0);
  salt::bench::attention_inputs in(1, 1, 1, L, L, d);
  const salt::run_options opts{.threads = 1};
  auto call = [&] {
    if (causal) salt::detail::linear_attention_impl<float>(in.qv(), in.kv(), in.vv(), in.ov(), map, salt::causal{}, opts, chunk);
    else salt::detail::linear_attention_impl<float>(in.qv(), in.kv(), in.vv(), in.ov(), map, salt::no_mask{}, opts, chunk);
  };
  call();  // warm up
  salt::bench::reset_alloc_stats();
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    call();
    benchmark::DoNotOptimize(in.out.data());
    benchmark::ClobberMemory();
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const auto alloc = salt::bench::read_alloc_stats();
  const double per_call = seconds / static_cast<double>(state.iterations());
  const double gflops = salt::bench::linear_flops(L, d, m, p, chunk, causal) / per_call * 1e-9;
  state.SetComplexityN(L);
  state.counters["GFLOP/s"] = gflops;
  state.counters["fraction_of_peak"] = gflops / fma_peak_gflops;
  state.counters["ns/token"] = per_call / static_cast<double>(L) * 1e9;
  state.counters["alloc_B/call"] = static_cast<double>(alloc.bytes) / static_cast<double>(state.iterations());
}

void BM_fma_peak(benchmark::State& state) {
  for (auto _ : state) state.SetIterationTime(1.0);
  state.counters["GFLOP/s"] = fma_peak_gflops;
}

/// Args: L, map kind, causal.
void BM_linear(benchmark::State& state) {
  const auto kind = static_cast<map_kind>(state.range(1));
  const bool causal = state.range(2) != 0;
  state.SetLabel(std::string(name_of(kind)) + (causal ? " causal" : " non-causal"));
  with_map(kind, [&](const auto& map, index m, index p) {
    run_linear(state, map, m, p, causal, salt::detail::linear_default_chunk);
  });
}

/// The causal form at L = 65,536, d = 64, m = 256 (FAVOR+), one thread: chunk size sweep (arg 1).
void BM_causal_chunk(benchmark::State& state) {
  with_map(map_kind::favor_plus, [&](const auto& map, index m, index p) {
    run_linear(state, map, m, p, true, state.range(1));
  });
  // The same speed counted with only the lower triangle of each chunk's C x C products as useful work.
  const index C = state.range(1), m = 256;
  const double useful = salt::bench::linear_flops(1, d, m, m, 0, false) + static_cast<double>(C + 1) * (m + d);
  state.counters["useful_fraction_of_peak"] =
      state.counters["fraction_of_peak"] * useful / salt::bench::linear_flops(1, d, m, m, C, true);
}

/// One causal FAVOR+ head (m = 256, d = 64) of L tokens on arg 1 threads: past 1024 queries the head runs as
/// a scan over blocks of its queries, so one head spreads over threads. Compare the times across threads.
void BM_causal_threads(benchmark::State& state) {
  const index L = state.range(0);
  const salt::run_options opts{.threads = static_cast<int>(state.range(1))};
  salt::bench::attention_inputs in(1, 1, 1, L, L, d);
  const salt::favor_plus<float> phi(salt::random_features<float>::orthogonal(256, d, 42));
  for (auto _ : state) {
    salt::linear_attention<float>(in.qv(), in.kv(), in.vv(), in.ov(), phi, salt::causal{}, opts);
    benchmark::DoNotOptimize(in.out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * L);  // tokens per second
}

/// One causal FAVOR+ head (m = 256, d = 64) of arg L tokens, 1 thread against every thread OpenMP offers, alternated
/// (thread_speedup.hpp: the median of 7 pairs): the scaling bar of the two-level scan. Counters ms_1, ms_all,
/// speedup, threads.
void BM_causal_one_head_scaling(benchmark::State& state) {
  const index L = state.range(0);
  salt::bench::attention_inputs in(1, 1, 1, L, L, d);
  const salt::favor_plus<float> phi(salt::random_features<float>::orthogonal(256, d, 42));
  salt::bench::speedup_sample sample;
  for (auto _ : state)
    sample = salt::bench::thread_speedup(
        [&](int threads) {
          salt::linear_attention<float>(in.qv(), in.kv(), in.vv(), in.ov(), phi, salt::causal{}, {.threads = threads});
        },
        7);
  sample.report(state);
}

/// Streaming decode at d = 64, m = 64 (FAVOR+): append(k, v) then query(q) per token, one thread.
void BM_streaming(benchmark::State& state) {
  const index m = state.range(0), tokens = 65536;
  salt::bench::attention_inputs in(1, 1, 1, tokens, tokens, d);
  const salt::favor_plus<float> phi(salt::random_features<float>::orthogonal(m, d, 42));
  salt::recurrent_state<float, salt::favor_plus<float>> st(phi, d, d);
  salt::bench::reset_alloc_stats();
  double seconds = 0;
  for (auto _ : state) {
    st.reset();
    const auto t0 = std::chrono::steady_clock::now();
    for (index t = 0; t < tokens; ++t) {
      st.append(in.k.data() + t * d, in.v.data() + t * d);
      st.query(in.q.data() + t * d, in.out.data() + t * d);
    }
    benchmark::DoNotOptimize(in.out.data());
    benchmark::ClobberMemory();
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const auto alloc = salt::bench::read_alloc_stats();
  const double tok = static_cast<double>(tokens) * static_cast<double>(state.iterations());
  state.counters["tokens/s"] = tok / seconds;
  state.counters["GFLOP/s"] = 2.0 * (2.0 * m * d + 2.0 * m * d + m) * tok / seconds * 1e-9;
  state.counters["alloc_B/token"] = static_cast<double>(alloc.bytes) / tok;
}

/// detail::gemm alone on linear attention's shapes (args rows, cols, depth, a transposed): the state read
/// phi(Q_c) [S | phi(K_c)^T] (64 x 128 x 256), A V (64 x 64 x 64), the state update phi(K_c)^T V (256 x 64 x
/// 64, a transposed) and a feature projection (64 x 256 x 64); fraction of the in-run FMA peak.
void BM_gemm(benchmark::State& state) {
  const index rows = state.range(0), cols = state.range(1), depth = state.range(2);
  const bool trans_a = state.range(3) != 0;
  std::vector<float> a(static_cast<std::size_t>(rows * depth), 0.5f), b(static_cast<std::size_t>(depth * cols), 0.25f),
      c(static_cast<std::size_t>(rows * cols));
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    using salt::detail::gemm_update;
    if (trans_a) salt::detail::gemm<float, true, false>(rows, cols, depth, a.data(), rows, b.data(), cols, c.data(), cols, gemm_update::overwrite);
    else salt::detail::gemm<float, false, false>(rows, cols, depth, a.data(), depth, b.data(), cols, c.data(), cols, gemm_update::overwrite);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const double flops = 2.0 * static_cast<double>(rows * cols * depth) * static_cast<double>(state.iterations());
  state.counters["fraction_of_peak"] = flops / seconds * 1e-9 / fma_peak_gflops;
}

/// Error of FAVOR+ (orthogonal, chi norms, seed 42) against exact softmax attention (salt::attention,
/// no_mask) on the same inputs, non-causal, at L = 4096, d = 64: the attention_inputs q, k uniform in
/// [-1, 1) times scale = arg 1 / 4 (0.5, 1, 2: larger norms give peakier softmax rows and noisier
/// features). Args: m, 4 * scale.
void BM_error_vs_exact(benchmark::State& state) {
  const index m = state.range(0), L = 4096;
  const float scale = static_cast<float>(state.range(1)) / 4;
  salt::bench::attention_inputs in(1, 1, 1, L, L, d);
  for (float& x : in.q) x *= scale;
  for (float& x : in.k) x *= scale;
  salt::row_matrix<float> exact(L, d);
  salt::attention(in.qv(), in.kv(), in.vv(), salt::tensor_view<float>::of(exact));
  const salt::favor_plus<float> phi(salt::random_features<float>::orthogonal(m, d, 42));
  for (auto _ : state) salt::linear_attention(in.qv(), in.kv(), in.vv(), in.ov(), phi);
  const Eigen::Map<const salt::row_matrix<float>> approx(in.out.data(), L, d);
  state.counters["rel_frobenius"] = salt::bench::relative_error(approx, exact);
  state.counters["max_abs"] = (approx - exact).cwiseAbs().maxCoeff();
  state.counters["exact_max_abs"] = exact.cwiseAbs().maxCoeff();
}


/// The backward of one head of L tokens (d = dv = 64), one thread, against the forward on the same inputs,
/// alternated call by call so both see the same moments of the machine (medians of 5 pairs per iteration).
/// Args: L, map kind, causal. Counters: backward_over_forward, GFLOP/s and fraction_of_peak of the backward
/// (linear_backward_flops), ms of each.
void BM_linear_backward(benchmark::State& state) {
  const index L = state.range(0);
  const auto kind = static_cast<map_kind>(state.range(1));
  const bool causal = state.range(2) != 0;
  state.SetLabel(std::string(name_of(kind)) + (causal ? " causal" : " non-causal"));
  salt::bench::attention_inputs in(1, 1, 1, L, L, d);
  std::vector<float> dout = in.q, dq(in.q.size()), dk(in.k.size()), dv(in.v.size());
  using cv = salt::tensor_view<const float>;
  using mv = salt::tensor_view<float>;
  const salt::run_options opts{.threads = 1};
  with_map(kind, [&](const auto& map, index m, index p) {
    auto forward = [&] {
      if (causal) salt::linear_attention<float>(in.qv(), in.kv(), in.vv(), in.ov(), map, salt::causal{}, opts);
      else salt::linear_attention<float>(in.qv(), in.kv(), in.vv(), in.ov(), map, salt::no_mask{}, opts);
    };
    auto backward = [&] {
      const cv o = cv::bhld(in.out.data(), 1, 1, L, d), g = cv::bhld(dout.data(), 1, 1, L, d);
      const mv gq = mv::bhld(dq.data(), 1, 1, L, d), gk = mv::bhld(dk.data(), 1, 1, L, d), gv = mv::bhld(dv.data(), 1, 1, L, d);
      if (causal) salt::linear_attention_backward<float>(in.qv(), in.kv(), in.vv(), o, g, gq, gk, gv, map, salt::causal{}, opts);
      else salt::linear_attention_backward<float>(in.qv(), in.kv(), in.vv(), o, g, gq, gk, gv, map, salt::no_mask{}, opts);
    };
    using salt::bench::seconds_of;
    forward(), backward();  // warm up
    std::vector<double> fwd, bwd, ratio;
    for (auto _ : state)
      for (int r = 0; r < 5; ++r) {
        fwd.push_back(seconds_of(forward));
        bwd.push_back(seconds_of(backward));
        ratio.push_back(bwd.back() / fwd.back());
      }
    const double b = salt::bench::median_of(bwd);
    const double gflops = salt::bench::linear_backward_flops(L, d, m, p, salt::detail::linear_default_chunk, causal) / b * 1e-9;
    state.counters["backward_over_forward"] = salt::bench::median_of(ratio);
    state.counters["GFLOP/s"] = gflops;
    state.counters["fraction_of_peak"] = gflops / fma_peak_gflops;
    state.counters["ms_backward"] = b * 1e3;
    state.counters["ms_forward"] = salt::bench::median_of(fwd) * 1e3;
  });
}

/// The causal FAVOR+ backward of 16 heads of arg L tokens (m = 256, d = 64), 1 thread against every thread
/// OpenMP offers, alternated (thread_speedup.hpp): threads run over heads. Counters ms_1, ms_all, speedup.
void BM_linear_backward_threads(benchmark::State& state) {
  const index L = state.range(0), heads = 16;
  salt::bench::attention_inputs in(1, heads, heads, L, L, d);
  std::vector<float> dout = in.q, dq(in.q.size()), dk(in.k.size()), dv(in.v.size());
  const salt::favor_plus<float> phi(salt::random_features<float>::orthogonal(256, d, 42));
  using cv = salt::tensor_view<const float>;
  using mv = salt::tensor_view<float>;
  salt::linear_attention<float>(in.qv(), in.kv(), in.vv(), in.ov(), phi, salt::causal{});
  salt::bench::speedup_sample sample;
  for (auto _ : state)
    sample = salt::bench::thread_speedup(
        [&](int threads) {
          salt::linear_attention_backward<float>(
              in.qv(), in.kv(), in.vv(), cv::bhld(in.out.data(), 1, heads, L, d), cv::bhld(dout.data(), 1, heads, L, d),
              mv::bhld(dq.data(), 1, heads, L, d), mv::bhld(dk.data(), 1, heads, L, d), mv::bhld(dv.data(), 1, heads, L, d),
              phi, salt::causal{}, {.threads = threads});
        },
        5);
  sample.report(state);
}

}  // namespace

BENCHMARK(BM_fma_peak)->UseManualTime()->Iterations(1);
BENCHMARK(BM_linear)
    ->ArgsProduct({benchmark::CreateRange(1024, 1 << 20, 4), {0}, {0, 1}})
    ->ArgsProduct({benchmark::CreateRange(1024, 1 << 16, 4), {1, 2, 3}, {0, 1}})
    ->ArgNames({"L", "map", "causal"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_causal_chunk)
    ->ArgsProduct({{65536}, {32, 48, 64, 96, 128, 256}})
    ->ArgNames({"L", "chunk"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_causal_threads)
    ->ArgsProduct({{65536}, {1, 2, 4, 8, 16}})
    ->ArgNames({"L", "threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_causal_one_head_scaling)->Arg(65536)->ArgName("L")->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_streaming)->Arg(64)->ArgName("m")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm)
    ->Args({64, 128, 256, 0})
    ->Args({64, 64, 64, 0})
    ->Args({256, 64, 64, 1})
    ->Args({64, 256, 64, 0})
    ->ArgNames({"rows", "cols", "depth", "trans_a"});
BENCHMARK(BM_error_vs_exact)
    ->ArgsProduct({{16, 64, 256, 1024}, {2, 4, 8}})
    ->ArgNames({"m", "scale"})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

BENCHMARK(BM_linear_backward)
    ->ArgsProduct({{4096, 16384}, {0, 1, 2, 3}, {0, 1}})
    ->ArgNames({"L", "map", "causal"})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_linear_backward_threads)->Arg(4096)->ArgName("L")->Iterations(1)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) { return salt::bench::benchmark_main(argc, argv, fma_peak_gflops); }
