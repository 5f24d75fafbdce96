#!/usr/bin/env python3
"""Golden gradients from PyTorch's autograd through torch.nn.functional.scaled_dot_product_attention in float64:
salt's attention_backward must reproduce them (tests/test_backward.cpp, to 1e-10).

    python3 tools/make_sdpa_backward_fixtures.py --out tests/data

Needs torch (the reference is 2.11); downloads nothing: inputs come from fixed seeds. Writes one text file per
case, tests/data/sdpa_backward_*.txt, in make_hf_fixtures.py's format (read by tests/fixtures.hpp). Records:

  q (Hq, Lq, d), k and v (Hkv, Lk, d / dv), dout (Hq, Lq, dv): the inputs and the gradient of the loss by the
      output (the loss is sum(dout * out));
  out (Hq, Lq, dv), dq, dk, dv: SDPA's output and autograd's gradients;
  mask: 0 none, 1 causal aligned bottom-right (salt::causal{}), 2 a sliding window (salt::sliding_window{left,
      right}); left, right: the window. Masks other than none go to SDPA as a boolean attn_mask (True: attend),
      built from the same rule, so no is_causal alignment question arises; grouped-query cases use enable_gqa.
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_hf_fixtures import FixtureWriter  # noqa: E402  (the shared file format)

CASES = [  # name, Hq, Hkv, Lq, Lk, d, dv, mask, left, right
    ("dense", 2, 2, 37, 37, 8, 6, 0, 0, 0),
    ("causal", 2, 2, 37, 37, 8, 8, 1, 0, 0),
    ("causal_lq20_lk45", 1, 1, 20, 45, 8, 5, 1, 0, 0),
    ("window_5_2", 2, 2, 41, 41, 6, 6, 2, 5, 2),
    ("gqa_causal", 4, 2, 33, 33, 8, 8, 1, 0, 0),
]


def allowed(lq, lk, mask, left, right):
    i = torch.arange(lq).unsqueeze(1) + (lk - lq)  # the query's position on the key axis (bottom-right)
    j = torch.arange(lk).unsqueeze(0)
    if mask == 1:
        return j <= i
    return (j >= i - left) & (j <= i + right)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    for n, (name, hq, hkv, lq, lk, d, dv, mask, left, right) in enumerate(CASES):
        g = torch.Generator().manual_seed(1000 + n)
        q = torch.randn(1, hq, lq, d, generator=g, dtype=torch.float64, requires_grad=True)
        k = torch.randn(1, hkv, lk, d, generator=g, dtype=torch.float64, requires_grad=True)
        v = torch.randn(1, hkv, lk, dv, generator=g, dtype=torch.float64, requires_grad=True)
        dout = torch.randn(1, hq, lq, dv, generator=g, dtype=torch.float64)
        attn_mask = None if mask == 0 else allowed(lq, lk, mask, left, right)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, enable_gqa=hq != hkv)
        out.backward(dout)
        w = FixtureWriter(f"torch {torch.__version__} scaled_dot_product_attention float64 autograd; case {name}")
        for rec, t in (("q", q), ("k", k), ("v", v), ("dout", dout), ("out", out), ("dq", q.grad), ("dk", k.grad),
                       ("dv", v.grad)):
            w.record(rec, t.detach()[0])
        w.record("mask", mask)
        w.record("left", left)
        w.record("right", right)
        path = os.path.join(a.out, f"sdpa_backward_{name}.txt")
        with open(path, "w") as f:
            f.write(w.text())
        print(path, "written")


if __name__ == "__main__":
    main()
