#!/usr/bin/env bash
# The complexity demo: every kernel over sequence lengths, a table on stdout, build/complexity.png.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh cmake make g++ libeigen3-dev gnuplot-nox
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release \
  -DSALT_BUILD_TESTS=OFF -DSALT_BUILD_EXAMPLES=OFF -DSALT_INSTALL=OFF > /dev/null
cmake --build build/release --target salt_demo -j "$(nproc)"
build/release/benchmarks/salt_demo --out build "$@"
