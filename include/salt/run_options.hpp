#pragma once
/// \file run_options.hpp
/// How a call runs, as opposed to what it computes: every kernel family takes one.

namespace salt {

/// How a call runs (not what it computes: results are identical, bit for bit, for every setting).
struct run_options {
  int threads = 0;  ///< 0: OpenMP's default (OMP_NUM_THREADS); ignored without OpenMP
};

}  // namespace salt
