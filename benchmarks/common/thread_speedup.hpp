#pragma once
/// \file thread_speedup.hpp
/// How one call scales with threads on a shared, noisy machine: calls on 1 thread and on every thread OpenMP
/// offers, alternated pair by pair, so that both sides see the same moments of the machine's load; the
/// speed-up is the median of the pairs' ratios, which one slow call (a neighbour's burst, a frequency change)
/// moves far less than a ratio of sums or of bests.

#include <benchmark/benchmark.h>

#include <salt/detail/parallel.hpp>

#include "timing.hpp"

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

namespace salt::bench {

/// Every hardware thread OpenMP offers (1 without OpenMP).
inline int all_threads() { return salt::detail::thread_count(0, 1 << 30); }

/// Medians of `pairs` alternating calls of run(threads): one thread, then all, one warm-up pair first.
struct speedup_sample {
  double ms_1 = 0, ms_all = 0, speedup = 0;
  int threads = 1;

  /// counters ms_1, ms_all, speedup and threads (prefixed with `name_` when a name is given).
  void report(benchmark::State& state, const std::string& name = "") const {
    const std::string p = name.empty() ? "" : name + "_";
    state.counters[p + "ms_1"] = ms_1;
    state.counters[p + "ms_all"] = ms_all;
    state.counters[p + "speedup"] = speedup;
    state.counters["threads"] = threads;
  }
};

template <class Run>
speedup_sample thread_speedup(const Run& run, int pairs) {
  const int all = all_threads();
  auto seconds = [&](int threads) { return seconds_of([&] { run(threads); }); };
  seconds(1), seconds(all);  // warm-up: workspaces, pages, the thread pool
  std::vector<double> one, many, ratio;
  for (int p = 0; p < pairs; ++p) {
    one.push_back(seconds(1));
    many.push_back(seconds(all));
    ratio.push_back(one.back() / many.back());
  }
  return {median_of(one) * 1e3, median_of(many) * 1e3, median_of(ratio), all};
}

}  // namespace salt::bench
