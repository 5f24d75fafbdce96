#pragma once
/// \file detail/parallel.hpp
/// The one parallel loop of the library: independent work items over OpenMP threads, each thread with a
/// workspace of its own, made once per call as the thread starts. Every family runs on it.

#include <algorithm>
#include <exception>
#include <optional>
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
/// item at a time, each thread with its own workspace from make(). Each thread makes its own, inside the
/// region: made one after another on the calling thread, sixteen linear-attention workspaces (their zeroing
/// and first-touch page faults) were a serial millisecond that capped a long causal head's speed-up, and a
/// workspace made by the thread that uses it lies in its own memory node. An exception from make() (an
/// allocation failure) is caught in its thread; once every thread has tried, none runs any item and the first
/// exception is rethrown to the caller, never terminating inside OpenMP. An item must be computed the same
/// way whichever thread takes it; results then do not depend on the number of threads.
template <class Make, class Work>
void parallel_for(index items, int threads, Make&& make, Work&& work) {
  using workspace = std::invoke_result_t<Make&>;
  if (items <= 0) return;
#if SALT_HAS_OPENMP
  if (threads > 1) {
    std::exception_ptr failure;
#pragma omp parallel num_threads(threads)
    {
      std::optional<workspace> ws;
      try {
        ws.emplace(make());
      } catch (...) {
#pragma omp critical(salt_parallel_for_failure)
        if (!failure) failure = std::current_exception();
      }
#pragma omp barrier
      if (!failure) {  // the same answer in every thread after the barrier, so all or none enter the loop
#pragma omp for schedule(dynamic, 1)
        for (index it = 0; it < items; ++it) work(it, *ws);
      }
    }
    if (failure) std::rethrow_exception(failure);
    return;
  }
#else
  (void)threads;
#endif
  workspace ws = make();
  for (index it = 0; it < items; ++it) work(it, ws);
}

}  // namespace salt::detail
