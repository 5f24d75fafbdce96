#pragma once
/// \file detail/parallel.hpp
/// The one parallel loop of the library: independent work items over OpenMP threads, each thread with a
/// workspace of its own, made once per call before any thread starts. Every family runs on it.

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../config.hpp"

#if SALT_HAS_OPENMP
#include <omp.h>
#endif

namespace salt::detail {

/// Threads for a call of `items` work items: `requested` (0: OpenMP's default), at most one per item, at
/// least 1; always 1 without OpenMP.
inline int thread_count(int requested, index items) noexcept {
#if SALT_HAS_OPENMP
  return static_cast<int>(std::clamp<index>(requested > 0 ? requested : omp_get_max_threads(), 1, std::max<index>(items, 1)));
#else
  (void)requested, (void)items;
  return 1;
#endif
}

/// A workspace for loops that need none.
struct no_workspace {};

/// Runs work(item, workspace) for every item in [0, items) on `threads` threads, dynamically scheduled one
/// item at a time, each thread with its own workspace from make(). The workspaces are made here, before
/// the parallel region, so that an allocation failure throws to the caller instead of terminating inside
/// OpenMP. An item must be computed the same way whichever thread takes it; results then do not depend on
/// the number of threads.
template <class Make, class Work>
void parallel_for(index items, int threads, Make&& make, Work&& work) {
  using workspace = std::invoke_result_t<Make&>;
  if (items <= 0) return;
#if SALT_HAS_OPENMP
  if (threads > 1) {
    std::vector<workspace> spaces;
    spaces.reserve(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) spaces.push_back(make());
#pragma omp parallel num_threads(threads)
    {
      workspace& ws = spaces[static_cast<std::size_t>(omp_get_thread_num())];
#pragma omp for schedule(dynamic, 1)
      for (index it = 0; it < items; ++it) work(it, ws);
    }
    return;
  }
#else
  (void)threads;
#endif
  workspace ws = make();
  for (index it = 0; it < items; ++it) work(it, ws);
}

}  // namespace salt::detail
