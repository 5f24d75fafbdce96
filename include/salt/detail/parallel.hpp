#pragma once
/// \file detail/parallel.hpp
/// The one parallel loop of the library: independent work items over OpenMP threads, each thread with a
/// workspace of its own, made once per call as the thread starts. Every family runs on it.

#include <algorithm>
#include <atomic>
#include <exception>
#include <optional>
#include <type_traits>
#include <vector>

#include "../config.hpp"

#if SALT_HAS_OPENMP
#include <omp.h>
#endif

namespace salt::detail {

/// Threads for a call of `items` work items: `requested` (0: OpenMP's default), at least 1; 1 for a single
/// item; always 1 without OpenMP. Not fewer because the items are few: libgomp ends the pool's surplus
/// threads when a region asks for fewer than the last one, and the next full region creates them again
/// (tens of microseconds each, and fresh pages for their workspaces). LSH's sort of two rounds on two
/// threads did that to every call on 16 threads. parallel_for lets the surplus threads idle instead.
inline int thread_count(int requested, index items) noexcept {
#if SALT_HAS_OPENMP
  if (items <= 1) return 1;
  return std::max(requested > 0 ? requested : omp_get_max_threads(), 1);
#else
  (void)requested, (void)items;
  return 1;
#endif
}

/// A workspace for loops that need none.
struct no_workspace {};

/// Runs work(item, workspace) for every item in [0, items) on a team of `threads` threads, of which the
/// first min(threads, items) take items one at a time from a shared counter (a dynamic schedule), each with
/// a workspace of its own that it makes as it starts: made one after another on the calling thread, sixteen
/// linear-attention workspaces (their zeroing and first-touch page faults) were a serial millisecond, and a
/// workspace made by the thread that uses it lies in its memory node. The other threads of the team idle, so
/// that the pool keeps its size (thread_count says why). An exception from make() (an allocation failure) is
/// caught in its thread; once every thread has tried, no item runs and the first exception is rethrown to
/// the caller, never terminating inside OpenMP. An item must be computed the same way whichever thread takes
/// it; results then do not depend on the number of threads.
template <class Make, class Work>
void parallel_for(index items, int threads, Make&& make, Work&& work) {
  using workspace = std::invoke_result_t<Make&>;
  if (items <= 0) return;
#if SALT_HAS_OPENMP
  if (threads > 1) {
    const index active = std::min<index>(threads, items);
    std::atomic<index> next{0};
    std::exception_ptr failure;
#pragma omp parallel num_threads(threads)
    {
      std::optional<workspace> ws;
      if (omp_get_thread_num() < active) {
        try {
          ws.emplace(make());
        } catch (...) {
#pragma omp critical(salt_parallel_for_failure)
          if (!failure) failure = std::current_exception();
        }
      }
#pragma omp barrier
      if (ws && !failure)  // the same answer in every thread after the barrier
        for (index it = next++; it < items; it = next++) work(it, *ws);
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
