#!/usr/bin/env bash
# Fuzzing: builds the libFuzzer harnesses of tests/fuzz with clang (-O1, ASan + UBSan, assertions on) in
# build/fuzz, replays the committed corpora (regression tests), then fuzzes each harness for SECONDS
# (first argument, default 60), two at a time, from a scratch copy of its corpus: tests/fuzz/corpus is
# never written. Fails when any harness finds a crash, a sanitizer report or a failed check; the input
# that found it is kept in build/fuzz/findings/<harness>/.
#   scripts/fuzz.sh [SECONDS]
# A finding in the library fails the run, in CI too (scripts/test.sh): the harnesses check only the
# library's promises, and a harness bug they hit is fixed like a library bug. FUZZ_FINDINGS=report prints
# what the timed runs found and keeps the inputs but exits 0, for exploratory runs. The corpus replays always
# fail the run; a finding is fixed, then its input joins the corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
scripts/install-deps.sh cmake make clang libclang-rt-14-dev libomp-dev libeigen3-dev
harnesses=(fuzz_engine fuzz_backward fuzz_lsh fuzz_linear fuzz_layouts)
jobs=$(nproc)
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

echo "=== fuzz build"
cmake -S . -B build/fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE= -DSALT_BUILD_FUZZERS=ON -DSALT_WERROR=ON \
  -DSALT_BUILD_TESTS=OFF -DSALT_BUILD_BENCHMARKS=OFF -DSALT_BUILD_EXAMPLES=OFF -DSALT_INSTALL=OFF > /dev/null
cmake --build build/fuzz -j "$jobs"  # only the harnesses are configured; one build builds them in parallel
ctest --test-dir build/fuzz --output-on-failure -L fuzz -j "$jobs"

echo "=== fuzzing each harness for ${seconds} s, two at a time"
fuzz_one() {  # fuzz_one HARNESS: exit status 0 when nothing was found
  local name=$1 dir=build/fuzz/run/$1
  rm -rf "$dir" && mkdir -p "$dir/corpus" "build/fuzz/findings/$name"
  cp tests/fuzz/corpus/"$name"/* "$dir/corpus/"
  # One worker per harness, OpenMP kept to the harness's own thread-count check (2 threads at most).
  OMP_NUM_THREADS=2 build/fuzz/tests/fuzz/"$name" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 \
    -print_final_stats=1 -artifact_prefix="build/fuzz/findings/$name/" "$dir/corpus" > "$dir/log" 2>&1
}
pids=() names=() failed=()
for name in "${harnesses[@]}"; do
  fuzz_one "$name" &
  pids+=($!) names+=("$name")
  if [ ${#pids[@]} -eq 2 ]; then
    for i in 0 1; do wait "${pids[$i]}" || failed+=("${names[$i]}"); done
    pids=() names=()
  fi
done
for i in "${!pids[@]}"; do wait "${pids[$i]}" || failed+=("${names[$i]}"); done

for name in "${harnesses[@]}"; do
  log=build/fuzz/run/$name/log
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  echo "$name: ${runs:-?} executions in ${seconds} s (${rate:-?}/s)"
done
if [ ${#failed[@]} -gt 0 ]; then
  for name in "${failed[@]}"; do
    echo "=== $name found something (input kept in build/fuzz/findings/$name/):"
    grep -E "salt fuzz finding|runtime error|ERROR: AddressSanitizer|SUMMARY" "build/fuzz/run/$name/log" | head -20 || true
  done
  if [ "${FUZZ_FINDINGS:-fail}" = report ]; then
    echo "=== FUZZ FINDINGS ABOVE (reported, not failing this run: FUZZ_FINDINGS=report)"
    exit 0
  fi
  exit 1
fi
echo "fuzzing found nothing"
