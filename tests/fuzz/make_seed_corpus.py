#!/usr/bin/env python3
"""Writes the seed corpus of each harness into tests/fuzz/corpus/<harness>/: a few short byte strings from a
fixed seed (every byte string decodes into a case; these give mid-sized shapes and some specials), plus the
empty input (the smallest case). The fuzzers grow their own corpora from these. Beside them, added by hand:
cov-* (small inputs a local run found that raised coverage) and found-* (inputs that once failed a check;
each is a regression test now, replayed by ctest)."""
import os
import random

HARNESSES = ["fuzz_engine", "fuzz_lsh", "fuzz_linear", "fuzz_layouts", "fuzz_backward"]
here = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(20240607)
for name in HARNESSES:
    out = os.path.join(here, "corpus", name)
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, "seed-empty"), "wb").close()
    for i, length in enumerate([6, 24, 48, 96, 160, 256]):
        with open(os.path.join(out, f"seed-{i}"), "wb") as f:
            f.write(bytes(rng.randrange(256) for _ in range(length)))
