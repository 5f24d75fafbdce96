#!/usr/bin/env bash
# The complexity demo: every kernel over sequence lengths, a table on stdout, then build/complexity.png
# (time and throughput against L, error against budget) drawn by scripts/plot_complexity.py.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh cmake make g++ libeigen3-dev python3-matplotlib
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release \
  -DSALT_BUILD_TESTS=OFF -DSALT_BUILD_EXAMPLES=OFF -DSALT_INSTALL=OFF > /dev/null
cmake --build build/release --target salt_demo -j "$(nproc)"
build/release/benchmarks/salt_demo --out build "$@"
/usr/bin/python3 scripts/plot_complexity.py build | grep -v "^plotted: "
