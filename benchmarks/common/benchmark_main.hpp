#pragma once
/// \file benchmark_main.hpp
/// The main() of the Google Benchmark suites: this core's FMA peak is measured first, before any
/// benchmark runs, so that every counter can report its fraction of it.

#include <benchmark/benchmark.h>

#include <string>

#include "fma_peak.hpp"

namespace salt::bench {

/// Measures the FMA peak into `peak`, records it in the output's context, runs the selected benchmarks.
inline int benchmark_main(int argc, char** argv, double& peak) {
  peak = measure_fma_peak_gflops<float>(0.5);
  benchmark::AddCustomContext("fma_peak_gflops_per_core", std::to_string(peak));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace salt::bench
