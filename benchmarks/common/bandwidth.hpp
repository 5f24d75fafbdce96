#pragma once
/// \file bandwidth.hpp
/// The memory side of the benchmarks: a streaming read of a buffer on given threads, the in-run ceiling that
/// bandwidth-bound calls (decoding over a KV cache) are measured against, and a wall-clock timer.

#include <salt/salt.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <vector>

#include "timing.hpp"

namespace salt::bench {

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

}  // namespace salt::bench
