#!/usr/bin/env python3
"""Times PyTorch's CPU scaled_dot_product_attention as a peer for salt's benchmarks, in fp32 or bf16, forward
or backward (autograd through SDPA: its flash-attention backward on CPU, timed alone after each forward).

    python3 torch_sdpa.py --threads 8                      # B=1, H in {1, 8}, L=4096, d=64, causal and not
    python3 torch_sdpa.py --threads 1 --L 1024 4096 --causal 1
    python3 torch_sdpa.py --threads 1 --dtype bfloat16     # its bf16 kernel (AMX or AVX512-BF16 where there)
    python3 torch_sdpa.py --threads 1 --H 1 --backward     # the backward pass

Prints a '#' header (torch version, CPU capability, CPU model, column names), then one CSV line per
configuration: peer,torch_sdpa[_bf16],threads,B,H,L,d,causal,seconds_median,gflops
GFLOP/s counts the work the kernel must do: 4*B*H*L*L*d, halved for causal (as salt's benchmarks do), and 2.5
times that for the backward (salt_backward_bench's count).
"""
import argparse
import itertools
import statistics
import time

import torch
import torch.nn.functional as F


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def time_backward(b, h, l, d, causal, dtype, warmup, repeats):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, h, l, d, generator=g, dtype=torch.float32).to(dtype).requires_grad_() for _ in range(3))
    dout = torch.randn(b, h, l, d, generator=g, dtype=torch.float32).to(dtype)
    seconds = []
    for i in range(warmup + repeats):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        t0 = time.perf_counter()
        out.backward(dout)
        if i >= warmup:
            seconds.append(time.perf_counter() - t0)
        q.grad = k.grad = v.grad = None
    return statistics.median(seconds)


def time_config(b, h, l, d, causal, dtype, warmup, repeats):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, h, l, d, generator=g, dtype=torch.float32).to(dtype) for _ in range(3))  # (B, H, L, d)
    seconds = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            if i >= warmup:
                seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads(N)")
    p.add_argument("--B", type=int, nargs="+", default=[1])
    p.add_argument("--H", type=int, nargs="+", default=[1, 8])
    p.add_argument("--L", type=int, nargs="+", default=[4096])
    p.add_argument("--d", type=int, nargs="+", default=[64])
    p.add_argument("--causal", type=int, nargs="+", choices=[0, 1], default=[0, 1])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--backward", action="store_true", help="time the backward pass instead of the forward")
    a = p.parse_args()
    name = ("torch_sdpa" if a.dtype == "float32" else "torch_sdpa_bf16") + ("_backward" if a.backward else "")

    torch.set_num_threads(a.threads)
    print(f"# torch {torch.__version__}, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
          f"cpu {cpu_model()}; columns: peer,name,threads,B,H,L,d,causal,seconds_median,gflops")
    for b, h, l, d, causal in itertools.product(a.B, a.H, a.L, a.d, a.causal):
        timer = time_backward if a.backward else time_config
        s = timer(b, h, l, d, bool(causal), getattr(torch, a.dtype), a.warmup, a.repeats)
        flops = 4.0 * b * h * l * l * d * (0.5 if causal else 1.0) * (2.5 if a.backward else 1.0)
        print(f"peer,{name},{torch.get_num_threads()},{b},{h},{l},{d},{causal},{s:.6g},{flops / s * 1e-9:.2f}",
              flush=True)


if __name__ == "__main__":
    main()
