#!/usr/bin/env bash
# salt's decode beside PyTorch's SDPA (enable_gqa) and ONNX Runtime's GroupQueryAttention on the same cores:
# Lq = 1, Hq = 32, Hkv = 8, d = 128, caches of 4K, 32K and 128K tokens in fp32, bf16, fp16 (and int8 for salt), at
# 1 thread and at every core (salt_decode_bench's second argument: 1 thread, or 0 for all), each against the in-run
# read bandwidth.
#   benchmarks/peers/compare_decode.sh BUILD_DIR [THREADS...]
set -euo pipefail
bench=${1:?usage: compare_decode.sh BUILD_DIR [THREADS...]}/benchmarks/salt_decode_bench
shift
threads=("${@:-1 $(nproc)}")
here=$(dirname "$0")
"$bench" --benchmark_counters_tabular=true
for dtype in float32 bfloat16 float16; do
  for t in ${threads[@]}; do python3 "$here/decode_peers.py" --threads "$t" --dtype "$dtype"; done
done
