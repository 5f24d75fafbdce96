#!/usr/bin/env bash
# salt beside PyTorch's CPU scaled_dot_product_attention on the same cores and shapes
# (B = 1, H in {1, 8}, L = 4096, d = 64, causal and not), at 1 thread and at every core: fp32, then bf16
# (salt_precision_bench: salt's bf16 and fp16 storage against its float on the same values; torch in bf16).
#   benchmarks/peers/compare.sh BUILD_DIR [THREADS...]
set -euo pipefail
build=${1:?usage: compare.sh BUILD_DIR [THREADS...]}
bench=$build/benchmarks/salt_bench
shift
threads=("${@:-1 $(nproc)}")
here=$(dirname "$0")
"$bench" --benchmark_filter='fma_peak|peer_shapes' --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
for t in ${threads[@]}; do python3 "$here/torch_sdpa.py" --threads "$t"; done
"$build/benchmarks/salt_precision_bench" --benchmark_counters_tabular=true
for t in ${threads[@]}; do python3 "$here/torch_sdpa.py" --threads "$t" --dtype bfloat16; done
# The backward pass: salt_backward_bench (dense and causal, one head, L up to 4096, one thread, and its thread
# scaling) beside PyTorch's SDPA backward on the same shapes.
"$build/benchmarks/salt_backward_bench" --benchmark_filter='backward_(dense|causal)/4096|thread_scaling' --benchmark_counters_tabular=true
for t in ${threads[@]}; do python3 "$here/torch_sdpa.py" --threads "$t" --H 1 --backward; done
