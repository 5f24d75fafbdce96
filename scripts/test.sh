#!/usr/bin/env bash
# The full test suite, in three builds:
#   native    -march=native, optimised: every test, the examples and the package consumers;
#   sanitize  AddressSanitizer + UndefinedBehaviorSanitizer over the same tests;
#   portable  no -march flag (SSE2 only) and no OpenMP, so the generic SIMD path and the
#             single-threaded build are tested too.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh cmake make g++ libeigen3-dev catch2 libbenchmark-dev
jobs=$(nproc)
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

run() {  # run NAME CMAKE_ARGS...
  local name=$1
  shift
  echo "=== $name build"
  cmake -S . -B "build/$name" -DSALT_BUILD_BENCHMARKS=OFF "$@" > /dev/null
  cmake --build "build/$name" -j "$jobs"
  ctest --test-dir "build/$name" --output-on-failure -j "$jobs"
}

run native -DCMAKE_BUILD_TYPE=Release -DSALT_BUILD_BENCHMARKS=ON
run sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" -DSALT_SANITIZE=address,undefined -DSALT_INSTALL=OFF -DSALT_BUILD_EXAMPLES=OFF
run portable -DCMAKE_BUILD_TYPE=Release -DSALT_NATIVE_ARCH=OFF -DSALT_USE_OPENMP=OFF -DSALT_INSTALL=OFF -DSALT_BUILD_EXAMPLES=OFF
echo "all three builds passed"
