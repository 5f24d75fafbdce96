#pragma once
/// \file config.hpp
/// Library-wide types and switches: the index type, the version, OpenMP detection.

#include <cassert>
#include <cstdint>

#define SALT_VERSION_MAJOR 0  ///< Major version of salt; find_package(salt) accepts a request with the same major.
#define SALT_VERSION_MINOR 1  ///< Minor version.
#define SALT_VERSION_PATCH 0  ///< Patch version.

/// 1 when the kernels parallelise with OpenMP: the translation unit is compiled with OpenMP (`_OPENMP`)
/// and SALT_NO_OPENMP is not defined; 0 otherwise (every call then runs on the calling thread).
#if defined(_OPENMP) && !defined(SALT_NO_OPENMP)
#define SALT_HAS_OPENMP 1
#else
#define SALT_HAS_OPENMP 0
#endif

/// Internal invariant checks (never user input: that gets salt::error). Defaults to assert(); define
/// SALT_ASSERT before including salt to route them elsewhere.
#ifndef SALT_ASSERT
#define SALT_ASSERT(condition) assert(condition)
#endif

namespace salt {

/// Signed index used for every size and position (same width as Eigen::Index).
using index = std::ptrdiff_t;

}  // namespace salt
