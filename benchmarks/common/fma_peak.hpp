#pragma once
/// \file fma_peak.hpp
/// The machine's single-core FMA peak, measured in the running binary with the same instruction set the
/// kernels are compiled for: enough independent fused multiply-adds to hide their latency.

#include <salt/detail/simd.hpp>

#include <chrono>

namespace salt::bench {

/// GFLOP/s of a loop of independent packet FMAs on one core (2 flops per lane per FMA).
template <class T = float>
double measure_fma_peak_gflops(double seconds = 0.2) {
  using namespace salt::detail;
  using P = packet<T>;
  constexpr int chains = 16;  // more than FMA latency x FMA ports on any current core
  P acc[chains];
  for (int c = 0; c < chains; ++c) acc[c] = ei::pset1<P>(T(c) * T(1e-3));
  const P a = ei::pset1<P>(T(0.999999)), b = ei::pset1<P>(T(1e-7));
  double best = 0;
  const auto start = std::chrono::steady_clock::now();
  do {
    constexpr long iterations = 1 << 20;
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < iterations; ++i)
      for (int c = 0; c < chains; ++c) acc[c] = ei::pmadd(acc[c], a, b);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * lanes<T> * chains * iterations / s * 1e-9);
  } while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds);
  alignas(64) T lanes_out[lanes<T>];
  volatile T sink = 0;  // keeps the chains alive
  for (int c = 0; c < chains; ++c) {
    ei::pstore(lanes_out, acc[c]);
    sink = sink + lanes_out[0];
  }
  return best;
}

}  // namespace salt::bench
