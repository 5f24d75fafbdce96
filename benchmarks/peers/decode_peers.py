#!/usr/bin/env python3
"""Times decode peers on the CPU: one new query per head against a long KV cache, grouped-query heads.

    python3 decode_peers.py --threads 1 --lk 4096 32768 131072
    python3 decode_peers.py --threads 1 --dtype bfloat16          # caches in bf16 (or float16)

Peers: PyTorch's scaled_dot_product_attention(enable_gqa=True) on (B, H, L, d) tensors, and ONNX Runtime's
com.microsoft GroupQueryAttention (its CPU decode kernel) when the onnx package is there to build its graph, in
float32 and float16 (its CPU kernel has no bf16). GB/s counts the K and V bytes of the cache
(2 * B * Hkv * Lk * d * bytes per element), as salt_decode_bench does.
Prints a '#' header, then CSV lines: peer,dtype,threads,B,Hq,Hkv,Lq,Lk,d,seconds_median,cache_GBps
"""
import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F


def median_seconds(call, warmup, repeats):
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds)


def torch_sdpa(b, hq, hkv, lk, d, dtype, warmup, repeats):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(b, hq, 1, d, generator=g).to(dtype)
    k, v = (torch.randn(b, hkv, lk, d, generator=g).to(dtype) for _ in range(2))
    with torch.inference_mode():
        return median_seconds(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True), warmup, repeats)


def ort_gqa(b, hq, hkv, lk, d, dtype, threads, warmup, repeats):
    """GroupQueryAttention with a past cache of lk - 1 tokens and one new token: it attends to lk keys."""
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError as e:
        return None, f"not run: {e}"
    if dtype not in ("float32", "float16"):
        return None, f"not run: its CPU kernel has no {dtype}"
    element, np_type = (TensorProto.FLOAT, np.float32) if dtype == "float32" else (TensorProto.FLOAT16, np.float16)
    past = lk - 1
    inputs = [
        helper.make_tensor_value_info("query", element, [b, 1, hq * d]),
        helper.make_tensor_value_info("key", element, [b, 1, hkv * d]),
        helper.make_tensor_value_info("value", element, [b, 1, hkv * d]),
        helper.make_tensor_value_info("past_key", element, [b, hkv, lk, d]),
        helper.make_tensor_value_info("past_value", element, [b, hkv, lk, d]),
        helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, [b]),
        helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, []),
    ]
    outputs = [
        helper.make_tensor_value_info("output", element, [b, 1, hq * d]),
        helper.make_tensor_value_info("present_key", element, [b, hkv, lk, d]),
        helper.make_tensor_value_info("present_value", element, [b, hkv, lk, d]),
    ]
    node = helper.make_node("GroupQueryAttention", [i.name for i in inputs], [o.name for o in outputs],
                            domain="com.microsoft", num_heads=hq, kv_num_heads=hkv)
    graph = helper.make_graph([node], "decode", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10  # the onnx package may write a newer IR version than onnxruntime reads
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - the op's availability differs between builds
        return None, f"not run: {e}".splitlines()[0]
    rng = np.random.default_rng(0)
    feed = {
        "query": rng.standard_normal((b, 1, hq * d), dtype=np.float32).astype(np_type),
        "key": rng.standard_normal((b, 1, hkv * d), dtype=np.float32).astype(np_type),
        "value": rng.standard_normal((b, 1, hkv * d), dtype=np.float32).astype(np_type),
        "past_key": rng.standard_normal((b, hkv, lk, d), dtype=np.float32).astype(np_type),
        "past_value": rng.standard_normal((b, hkv, lk, d), dtype=np.float32).astype(np_type),
        "seqlens_k": np.full((b,), past, dtype=np.int32),  # the index of the last token: past + 1 - 1
        "total_sequence_length": np.array(lk, dtype=np.int32),
    }
    try:
        return median_seconds(lambda: session.run(["output"], feed), warmup, repeats), ""
    except Exception as e:  # noqa: BLE001
        return None, f"not run: {e}".splitlines()[0]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lk", type=int, nargs="+", default=[4096, 32768, 131072])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--hq", type=int, default=32)
    p.add_argument("--hkv", type=int, default=8)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    a = p.parse_args()
    dtype = getattr(torch, a.dtype)
    element_bytes = 4 if a.dtype == "float32" else 2
    torch.set_num_threads(a.threads)
    print(f"# torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, threads {a.threads}")
    print("# peer,dtype,threads,B,Hq,Hkv,Lq,Lk,d,seconds_median,cache_GBps")
    for lk in a.lk:
        cache = 2 * a.batch * a.hkv * lk * a.d * element_bytes
        rows = [("torch_sdpa_gqa", torch_sdpa(a.batch, a.hq, a.hkv, lk, a.d, dtype, a.warmup, a.repeats), "")]
        s, why = ort_gqa(a.batch, a.hq, a.hkv, lk, a.d, a.dtype, a.threads, a.warmup, a.repeats)
        rows.append(("ort_group_query_attention", s, why))
        for name, seconds, why in rows:
            if seconds is None:
                print(f"# {name}, Lk {lk}: {why}")
                continue
            print(f"{name},{a.dtype},{a.threads},{a.batch},{a.hq},{a.hkv},1,{lk},{a.d},{seconds:.6g},{cache / seconds * 1e-9:.3f}")


if __name__ == "__main__":
    main()
