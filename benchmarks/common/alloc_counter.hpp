#pragma once
/// \file alloc_counter.hpp
/// Counts what goes through the global operator new in a benchmark binary (alloc_counter.cpp replaces
/// it): bytes and calls since the last reset, and the peak of live bytes, which is the extra memory a
/// kernel needs beyond its inputs and outputs.

#include <cstddef>

namespace salt::bench {

struct alloc_stats {
  std::size_t calls = 0;
  std::size_t bytes = 0;       ///< allocated since reset
  std::size_t peak_live = 0;   ///< most bytes live at once since reset, above the live bytes at reset
};

void reset_alloc_stats();
alloc_stats read_alloc_stats();

}  // namespace salt::bench
