#pragma once
/// \file timing.hpp
/// The two measurements every suite takes by hand, where Google Benchmark's own loop does not fit (calls
/// alternated with another, medians of pairs): the seconds of one call, and the median of a sample.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace salt::bench {

/// Seconds one call of f takes, its writes forced out before the clock stops.
template <class F>
double seconds_of(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  benchmark::ClobberMemory();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// The median of a non-empty sample.
inline double median_of(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  const std::size_t n = x.size();
  return n % 2 == 1 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

}  // namespace salt::bench
