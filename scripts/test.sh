#!/usr/bin/env bash
# The full test suite: four builds and the fuzzers, every build with -Wall -Wextra -Wpedantic -Werror.
#   native    g++, -march=native, optimised: every test, the examples, the benchmarks and the package consumers,
#             the README's C++ blocks and the sources that must not compile (SALT_TEST_API);
#   sanitize  clang++, AddressSanitizer + UndefinedBehaviorSanitizer over the same kernel tests (so both compilers
#             build and pass them, and the generator's golden values hold under both); on an AVX-512 machine
#             for AVX2 (x86-64-v3), so that every ISA path the machine runs is tested: AVX-512 natively, AVX2
#             here, the generic path in the portable build;
#   portable  g++ with no -march flag (SSE2 only) and no OpenMP: the generic SIMD path, single-threaded (without
#             the sweeps of every mask, whose logic is the same on every ISA: SALT_TEST_MASK_SWEEPS);
#   thread    clang++ ThreadSanitizer over the threaded tests (8 std::threads calling every kernel, and
#             OpenMP teams inside them, watched through LLVM's Archer tool);
# then scripts/fuzz.sh: the corpus replays and every libFuzzer harness for FUZZ_SECONDS (default 60) each; a
# finding fails the run like a failed test (FUZZ_FINDINGS=report only prints it, for exploratory runs).
# First, in seconds: the API reference (Doxygen), in which an undocumented public name or a broken doc
# comment is an error.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh cmake make g++ clang libclang-rt-14-dev libomp-14-dev libeigen3-dev catch2 libbenchmark-dev \
  python3-matplotlib doxygen
jobs=$(nproc)
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

run() {  # run NAME CXX TARGET "TEST REGEX" CMAKE_ARGS...  (empty TARGET / REGEX: all)
  local name=$1 cxx=$2 target=$3 regex=$4
  shift 4
  echo "=== $name build ($cxx)"
  cmake -S . -B "build/$name" -DCMAKE_CXX_COMPILER="$cxx" -DSALT_WERROR=ON -DSALT_BUILD_BENCHMARKS=OFF "$@" > /dev/null
  if [ -n "$target" ]; then
    cmake --build "build/$name" -j "$jobs" --target "$target"
  else
    cmake --build "build/$name" -j "$jobs"
  fi
  ctest --test-dir "build/$name" --output-on-failure --no-tests=error -j "$jobs" ${regex:+-R "$regex"}
}

echo "=== docs (Doxygen; warnings are errors)"
cmake -S . -B build/docs -DSALT_BUILD_DOCS=ON -DSALT_BUILD_TESTS=OFF -DSALT_BUILD_BENCHMARKS=OFF \
  -DSALT_BUILD_EXAMPLES=OFF -DSALT_INSTALL=OFF > /dev/null
cmake --build build/docs --target salt_docs

run native g++ "" "" -DCMAKE_BUILD_TYPE=Release -DSALT_BUILD_BENCHMARKS=ON
sanitize_arch=()
if grep -qw avx512f /proc/cpuinfo; then sanitize_arch=(-DSALT_NATIVE_ARCH=OFF -DCMAKE_CXX_FLAGS=-march=x86-64-v3); fi
run sanitize clang++ "" "" -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" "${sanitize_arch[@]}" \
  -DSALT_SANITIZE=address,undefined -DSALT_INSTALL=OFF -DSALT_BUILD_EXAMPLES=OFF -DSALT_TEST_API=OFF
run portable g++ "" "" -DCMAKE_BUILD_TYPE=Release -DSALT_NATIVE_ARCH=OFF -DSALT_USE_OPENMP=OFF -DSALT_INSTALL=OFF \
  -DSALT_BUILD_EXAMPLES=OFF -DSALT_TEST_API=OFF -DSALT_TEST_MASK_SWEEPS=OFF
# Archer (LLVM's OpenMP data-race tool, shipped with libomp) tells TSan about OpenMP's synchronisation,
# which TSan cannot see inside the uninstrumented libomp (whose own accesses are ignored); without it every
# OpenMP barrier reads as a race. Sharing LSH's per-thread workspace between threads is reported at once.
OMP_TOOL_LIBRARIES=$(find /usr/lib/llvm-*/lib -name libarcher.so | head -n 1) \
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ignore_noninstrumented_modules=1" \
  run thread clang++ salt_threaded_tests "^(concurrency|tensor)$" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" -DSALT_SANITIZE=thread -DSALT_INSTALL=OFF -DSALT_BUILD_EXAMPLES=OFF \
  -DSALT_TEST_API=OFF
echo "all four builds passed"
FUZZ_FINDINGS=${FUZZ_FINDINGS:-fail} scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
