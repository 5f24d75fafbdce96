#!/usr/bin/env python3
"""Golden fixtures from HuggingFace transformers' LSHSelfAttention (Reformer), run in float64 on small cases;
salt's tests (tests/test_lsh.cpp) must reproduce their buckets exactly and their outputs to 1e-10.

    python3 tools/make_lsh_fixtures.py --out tests/data

Needs torch and transformers (the reference is transformers 5.17); downloads nothing: every module is built from
a config object, its weights and inputs drawn from fixed seeds. Writes tests/data/lsh_*.txt, one file per case,
and prints a summary. Exits non-zero, writing nothing, if any case fails a check (--keep-going writes what it has
and still exits non-zero).

File format: that of tools/make_hf_fixtures.py (read by tests/fixtures.hpp): a '#' header line with the versions,
'#' comments, records `name dim0 dim1 ...` followed by their values in C order, printed with '%.17g'. Records:

  qk, v       (heads, L, head_dim): the shared query/key vectors and the values exactly as HF's attention reads
              them (the outputs of its query_key and value projections, split into heads);
  out         (heads, L, head_dim): the per-head context HF returns, before any output projection;
  rotations   (heads, head_dim, n_hashes * rotation_size / 2): the random rotations HF drew, captured from
              torch.randn inside the call; HF's (heads, head_dim, n_hashes, rotation_size / 2) tensor with its
              last two dims merged, which is salt::lsh_rotations' layout. (heads, head_dim, 0) when HF drew none
              (sequences no longer than one chunk are not hashed);
  buckets     (heads, n_hashes, L): the bucket of every position in every round, as HF returned it minus the
              round offsets; padding positions hold the extra bucket (= the number of buckets);
  n_hashes, chunk_length, chunks_before, chunks_after, causal (0/1);
  bucket_factors  (k): HF's num_buckets as a list (one entry: a plain num_buckets);
  valid       (L): HF's attention_mask (1: a real key, 0: padding); absent when HF got no attention_mask;
  model_padding   the number of padding positions appended, as ReformerModel does in evaluation mode when L is
              not a multiple of the chunk length (0 otherwise); the records describe only the L real positions.

What the script does about HF's conventions:
  * The module runs in eval mode with dropout 0 and hash_seed set; is_decoder is the causal flag.
  * ReformerModel pads a sequence that is longer than one chunk and not a multiple of the chunk length to the
    next multiple, appending positions with attention_mask 0 (in eval mode; it refuses in training). The
    "model padding" case does exactly that at the module level and records the first L rows; it runs twice with
    different contents in the padding rows and checks the real rows do not change.
  * The script recomputes every case with its own float64 implementation of the semantics salt implements
    (below, `lsh_reference`, pure Python) from the recorded qk, v and rotations, and requires HF's output to
    match within 1e-12 and HF's buckets exactly. It also requires every bucket's argmax to win by a relative
    margin of 1e-4 at least, so that salt's float hashing, whose rounding differs from torch's, picks the same
    buckets; a case whose draw misses that margin is redrawn with the next seed (the seed used is recorded).
"""
import argparse
import math
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_hf_fixtures import FixtureError, FixtureWriter, log, make_config  # noqa: E402

REFERENCE_VERSION = (5, 17)
CONSISTENCY_TOL = 1e-12
MARGIN = 1e-4  # relative gap between the winning rotation coordinate and the runner-up
MAX_TOTAL_BYTES = 1 << 20
SELF_MASK_VALUE = -1e5  # HF: self_mask_value_float32
MASK_VALUE = -1e9  # HF: mask_value_float32

CASES = [
    # several rounds, not causal, one chunk before
    dict(name="lsh_L32_c8_r2", seq_len=32, heads=2, head_dim=8, chunk=8, n_hashes=2, buckets=[4], before=1, after=0,
         causal=False, seed=301),
    # four rounds, causal, two chunks before and one after
    dict(name="lsh_L64_c8_r4_causal", seq_len=64, heads=2, head_dim=8, chunk=8, n_hashes=4, buckets=[8], before=2,
         after=1, causal=True, seed=302),
    # an attention_mask with padding in the middle and at the end
    dict(name="lsh_L40_c8_r2_mask", seq_len=40, heads=2, head_dim=8, chunk=8, n_hashes=2, buckets=[4], before=1,
         after=1, causal=False, seed=303, pad=[5, 17, 18, 36, 37, 38, 39]),
    # a sequence no longer than one chunk: HF does plain attention (with the self mask), no hashing
    dict(name="lsh_L8_c8_short", seq_len=8, heads=2, head_dim=8, chunk=8, n_hashes=2, buckets=[4], before=1,
         after=0, causal=True, seed=304),
    # two chunks in all, one before and one after: the other chunk enters every softmax twice
    dict(name="lsh_L16_c8_r1_twice", seq_len=16, heads=2, head_dim=8, chunk=8, n_hashes=1, buckets=[4], before=1,
         after=1, causal=False, seed=305),
    # L not a multiple of the chunk length: ReformerModel's eval-mode padding
    dict(name="lsh_L20_c8_r2_modelpad", seq_len=20, heads=2, head_dim=8, chunk=8, n_hashes=2, buckets=[4],
         before=1, after=0, causal=True, seed=306, model_pad=True),
    # factorised buckets (HF's list form of num_buckets)
    dict(name="lsh_L32_c8_r2_factors", seq_len=32, heads=2, head_dim=8, chunk=8, n_hashes=2, buckets=[4, 2],
         before=1, after=0, causal=False, seed=307),
]


# --------------------------------------------------------------------------------------------------------------
# The semantics salt implements, in plain Python (float64), from qk, v, rotations.

def hash_buckets(x, rot, factors, n_hashes):
    """x: (L, d) lists; rot: (d, n_hashes * half) lists -> buckets (n_hashes, L) and the smallest relative margin."""
    half = sum(factors) // 2
    d = len(x[0])
    buckets, margin = [], float("inf")
    for r in range(n_hashes):
        row = []
        for xi in x:
            rotated = [sum(xi[c] * rot[c][r * half + j] for c in range(d)) for j in range(half)]
            bucket, product, start = 0, 1, 0
            for f in factors:
                part = rotated[start:start + f // 2]
                start += f // 2
                both = part + [-y for y in part]
                best = max(range(f), key=lambda j: (both[j], -j))  # first maximum
                ranked = sorted(both, reverse=True)
                scale = max(abs(ranked[0]), 1e-300)
                margin = min(margin, (ranked[0] - ranked[1]) / scale)
                bucket += product * best
                product *= f
            row.append(bucket)
        buckets.append(row)
    return buckets, margin


def softmax_rows(scores_rows):
    out = []
    for row in scores_rows:
        m = max(row)
        s = sum(math.exp(x - m) for x in row)
        out.append((m + math.log(s), [math.exp(x - m) / s for x in row]))
    return out


def lsh_reference(qk, v, rot, factors, n_hashes, chunk, before, after, causal, valid, padded_len=None):
    """One head. qk, v: (L, d); rot: (d, n_hashes * half); valid: (L) 0/1 or None; padded_len: ReformerModel's
    padded length (virtual positions L..padded_len-1 are padding keys). Returns out (L, d) and buckets
    (n_hashes, L) (None when the sequence is not hashed)."""
    L, d = len(qk), len(qk[0])
    Lp = padded_len or L
    is_valid = [1 if (p < L and (valid is None or valid[p])) else 0 for p in range(Lp)]
    knorm = [[x / math.sqrt(sum(y * y for y in row) / d + 1e-6) / math.sqrt(d) for x in row] for row in qk]
    zero = [0.0] * d

    def q_of(p):
        return qk[p] if p < L else zero

    def k_of(p):
        return knorm[p] if p < L else zero

    def v_of(p):
        return v[p] if p < L else zero

    def score(pq, pk):
        s = sum(a * b for a, b in zip(q_of(pq), k_of(pk)))
        if not is_valid[pk] or (causal and pk > pq):
            s = MASK_VALUE
        if pq == pk:
            s = SELF_MASK_VALUE
        return s

    if L <= chunk:  # HF's do_standard_self_attention: no hashing, one softmax over every key
        out = []
        for p, (_, probs) in enumerate(softmax_rows([[score(p, k) for k in range(L)] for p in range(L)])):
            out.append([sum(probs[k] * v_of(k)[c] for k in range(L)) for c in range(d)])
        return out, None

    buckets, _ = hash_buckets(qk, rot, factors, n_hashes)
    n_buckets = math.prod(factors)
    order = []  # sorted positions of all rounds, concatenated
    for r in range(n_hashes):
        keyed = [(buckets[r][p] if is_valid[p] else n_buckets, p) for p in range(Lp)]
        order += [p for _, p in sorted(keyed)]
    n_chunks = n_hashes * Lp // chunk
    assert n_hashes * Lp % chunk == 0
    results = []  # (lse, out) per sorted row
    for s, pq in enumerate(order):
        cq = s // chunk
        keys = []
        for o in range(-before, after + 1):
            ck = (cq + o) % n_chunks
            keys += order[ck * chunk:(ck + 1) * chunk]
        [(lse, probs)] = softmax_rows([[score(pq, pk) for pk in keys]])
        results.append((lse, [sum(p * v_of(pk)[c] for p, pk in zip(probs, keys)) for c in range(d)]))
    out = []
    for p in range(L):
        rows = [results[r * Lp + order[r * Lp:(r + 1) * Lp].index(p)] for r in range(n_hashes)]
        m = max(lse for lse, _ in rows)
        total = m + math.log(sum(math.exp(lse - m) for lse, _ in rows))
        out.append([sum(math.exp(lse - total) * o[c] for lse, o in rows) for c in range(d)])
    if valid is not None:
        buckets = [[b if valid[p] else n_buckets for p, b in enumerate(row)] for row in buckets]
    return out, buckets


# --------------------------------------------------------------------------------------------------------------
# Running HuggingFace's module.

class Randn:
    """While active, records what torch.randn returns (HF draws its rotations with it)."""

    def __init__(self, torch):
        self.torch, self.drawn, self._orig = torch, [], None

    def __enter__(self):
        self._orig = self.torch.randn

        def wrapper(*args, **kwargs):
            t = self._orig(*args, **kwargs)
            self.drawn.append(t.detach().clone())
            return t

        self.torch.randn = wrapper
        return self

    def __exit__(self, *exc):
        self.torch.randn = self._orig
        return False


def load_hf():
    try:
        import torch
        import transformers
        from transformers.models.reformer import modeling_reformer
    except ImportError as e:
        raise FixtureError(f"torch and transformers are needed ({e})") from e
    config_cls = getattr(transformers, "ReformerConfig", None)
    if config_cls is None:
        from transformers.models.reformer.configuration_reformer import ReformerConfig as config_cls
    if not hasattr(modeling_reformer, "LSHSelfAttention"):
        raise FixtureError("transformers.models.reformer.modeling_reformer has no LSHSelfAttention")
    versions = (f"transformers {transformers.__version__} | torch {torch.__version__} | "
                f"python {platform.python_version()}")
    return torch, transformers, modeling_reformer, config_cls, versions


def split_heads(t, heads):
    """(1, L, heads * d) -> (heads, L, d), as HF's _split_hidden_size_dim."""
    _, L, E = t.shape
    return t[0].reshape(L, heads, E // heads).permute(1, 0, 2).contiguous()


def run_hf(torch, module, hidden, mask, heads):
    with torch.no_grad(), Randn(torch) as rnd:
        captured = {}
        hooks = [getattr(module, n).register_forward_hook(
            lambda _m, _i, out, n=n: captured.__setitem__(n, out.detach().clone())) for n in ("query_key", "value")]
        try:
            kwargs = dict(attention_mask=mask) if mask is not None else {}
            res = module(hidden, output_attentions=False, **kwargs)
        finally:
            for h in hooks:
                h.remove()
    out = res.hidden_states if hasattr(res, "hidden_states") else res[0]
    buckets = res.buckets if hasattr(res, "buckets") else (res[2] if len(res) > 2 else None)
    return (split_heads(out, heads), split_heads(captured["query_key"], heads), split_heads(captured["value"], heads),
            buckets, rnd.drawn)


def run_case(hf, case, opts):
    torch, transformers, modeling, Config, versions = hf
    f64 = torch.float64
    name, L, H, d, c = case["name"], case["seq_len"], case["heads"], case["head_dim"], case["chunk"]
    n, factors, before, after, causal = case["n_hashes"], case["buckets"], case["before"], case["after"], case["causal"]
    E, half = H * d, sum(factors) // 2
    model_pad = (-L) % c if case.get("model_pad") else 0
    if case.get("model_pad") and (model_pad == 0 or L <= c):
        raise FixtureError(f"{name}: model padding needs L > chunk and L % chunk != 0")
    Lrun = L + model_pad
    valid = None
    if "pad" in case or model_pad:
        valid = [0 if p in case.get("pad", []) else 1 for p in range(L)]
    for attempt in range(20):
        seed = case["seed"] + 1000 * attempt
        config = make_config(Config, hidden_size=E, num_attention_heads=H, attention_head_size=d, attn_layers=["lsh"],
                             lsh_attn_chunk_length=c, num_hashes=n,
                             num_buckets=factors[0] if len(factors) == 1 else list(factors),
                             lsh_num_chunks_before=before, lsh_num_chunks_after=after, is_decoder=causal,
                             hash_seed=seed, lsh_attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.0,
                             max_position_embeddings=max(64, Lrun), axial_pos_embds=False)
        module = modeling.LSHSelfAttention(config).to(dtype=f64).eval()
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for lin in (module.query_key, module.value):
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen, dtype=f64) / math.sqrt(E))
        hidden = torch.randn(1, Lrun, E, generator=gen, dtype=f64)
        mask = None
        if valid is not None:
            mask = torch.tensor([valid + [0] * model_pad], dtype=torch.long)
        out, qk, v, buckets, drawn = run_hf(torch, module, hidden, mask, H)
        hashed = L > c
        if len(drawn) != (1 if hashed else 0):
            raise FixtureError(f"{name}: HF called torch.randn {len(drawn)} times, expected {1 if hashed else 0}")
        if hashed:
            rot = drawn[0]
            if tuple(rot.shape) != (H, d, n, half):
                raise FixtureError(f"{name}: rotations have shape {tuple(rot.shape)}, expected {(H, d, n, half)}")
            torch.manual_seed(seed)
            if not bool((torch.randn((H, d, n, half), dtype=f64) == rot).all()):
                raise FixtureError(f"{name}: the rotations are not torch.manual_seed(hash_seed); torch.randn(...)")
            rot = rot.reshape(H, d, n * half)
        else:
            rot = torch.zeros(H, d, 0, dtype=f64)
        # The first L rows are the real positions.
        out, qk, v = out[:, :L], qk[:, :L], v[:, :L]
        margin = float("inf")
        for h in range(H):
            if hashed:
                margin = min(margin, hash_buckets(qk[h].tolist(), rot[h].tolist(), factors, n)[1])
        if margin >= MARGIN:
            break
        log(f"[{name}] seed {seed}: smallest argmax margin {margin:.3g} < {MARGIN:g}; redrawing")
    else:
        raise FixtureError(f"{name}: no seed gave argmax margins >= {MARGIN:g}")

    if model_pad:  # the real rows must not depend on what the padding rows hold
        hidden2 = hidden.clone()
        hidden2[:, L:] = torch.randn(1, model_pad, E, generator=torch.Generator().manual_seed(seed + 7), dtype=f64) * 3
        out2 = run_hf(torch, module, hidden2, mask, H)[0][:, :L]
        diff = float((out2 - out).abs().max())
        if diff > 1e-15:
            raise FixtureError(f"{name}: the real rows change by {diff:.3g} with other padding contents")

    got_buckets = None
    if hashed:
        if buckets is None:
            raise FixtureError(f"{name}: HF returned no buckets")
        b = buckets.reshape(1, H, n, Lrun)[0]
        per_round = math.prod(factors) + (1 if valid is not None and 0 in (valid + [0] * model_pad) else 0)
        offsets = torch.arange(n).view(1, n, 1) * per_round
        got_buckets = (b - offsets)[:, :, :L]

    err, bucket_errors = 0.0, 0
    for h in range(H):
        ref_out, ref_buckets = lsh_reference(qk[h].tolist(), v[h].tolist(), rot[h].tolist(), factors, n, c, before,
                                             after, causal, valid, Lrun if model_pad else None)
        err = max(err, max(abs(a - b) for ra, rb in zip(ref_out, out[h].tolist()) for a, b in zip(ra, rb)))
        if hashed:
            bucket_errors += sum(int(a != b) for ra, rb in zip(ref_buckets, got_buckets[h].tolist())
                                 for a, b in zip(ra, rb))
    log(f"[{name}] seed {seed}: max|HF - lsh_reference| = {err:.3g}; bucket mismatches {bucket_errors}; smallest "
        f"argmax margin {margin:.3g}")
    problems = []
    if not err <= CONSISTENCY_TOL:
        problems.append(f"HF's output differs from lsh_reference by {err:.3g} > {CONSISTENCY_TOL:g}")
    if bucket_errors:
        problems.append(f"{bucket_errors} buckets differ from lsh_reference's")

    fw = FixtureWriter(f"salt HF fixture v1 | {name} | LSHSelfAttention | {versions}")
    fw.comment(
        "transformers.models.reformer.modeling_reformer.LSHSelfAttention, float64, batch 1, eval mode, dropout 0.\n"
        f"L = {L}, heads = {H}, head_dim = {d}, chunk_length = {c}, n_hashes = {n}, num_buckets = {factors}, "
        f"chunks before/after = {before}/{after}, is_decoder = {causal}, hash_seed = {seed}.\n"
        + (f"Padded to {Lrun} as ReformerModel does in eval mode (attention_mask 0 there); only the {L} real "
           "rows are recorded.\n" if model_pad else "")
        + ("L <= chunk_length: HF does plain attention with the self mask, no hashing (no rotations drawn).\n"
           if not hashed else "")
        + "qk, v: outputs of HF's query_key and value projections split into heads; out: the context per head.\n"
        f"Checked: max |out - lsh_reference (tools/make_lsh_fixtures.py)| = {err:.3g}; bucket mismatches "
        f"{bucket_errors}; smallest relative argmax margin {margin:.3g}.")
    fw.record("n_hashes", n)
    fw.record("chunk_length", c)
    fw.record("chunks_before", before)
    fw.record("chunks_after", after)
    fw.record("causal", int(causal))
    fw.record("bucket_factors", list(factors))
    fw.record("model_padding", model_pad)
    if valid is not None:
        fw.record("valid", valid)
    fw.record("rotations", rot, shape=tuple(rot.shape))
    if hashed:
        fw.record("buckets", got_buckets)
    fw.record("qk", qk)
    fw.record("v", v)
    fw.record("out", out)
    summary = f"L={L} H={H} d={d} c={c} n={n} buckets={factors} b/a={before}/{after} causal={causal} |HF-ref|={err:.2g}"
    return fw.text(), summary, problems


def self_test():
    """Checks lsh_reference on tiny inputs without torch: exact attention where LSH must equal it."""
    import random
    rng = random.Random(5)
    L, d = 16, 4
    qk = [[rng.uniform(-1, 1) for _ in range(d)] for _ in range(L)]
    v = [[rng.uniform(-1, 1) for _ in range(d)] for _ in range(L)]
    rot = [[rng.gauss(0, 1) for _ in range(4)] for _ in range(d)]  # (d, 2 rounds * 2)
    # Where every chunk sees every chunk, LSH is plain attention with the self mask: one round of two chunks
    # with one chunk before (each key once), and two rounds of two chunks with three before (each key twice in
    # both rounds' softmaxes, which then agree).
    knorm = [[x / math.sqrt(sum(y * y for y in r) / d + 1e-6) / math.sqrt(d) for x in r] for r in qk]
    for n_hashes, before in ((1, 1), (2, 3)):
        out, _ = lsh_reference(qk, v, rot, [4], n_hashes, 8, before, 0, False, None)
        for p in range(L):
            s = [SELF_MASK_VALUE if k == p else sum(a * b for a, b in zip(qk[p], knorm[k])) for k in range(L)]
            [(_, probs)] = softmax_rows([s])
            exact = [sum(probs[k] * v[k][c] for k in range(L)) for c in range(d)]
            assert max(abs(a - b) for a, b in zip(exact, out[p])) < 1e-14, "self-test failed"
    # model padding: the padded positions' contents must not matter (they are zeros here)
    out2, b2 = lsh_reference(qk[:13], v[:13], rot, [4], 2, 4, 1, 0, True, [1] * 13, 16)
    assert len(out2) == 13 and len(b2[0]) == 13
    log("make_lsh_fixtures: self-test passed")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(HERE, "..", "tests", "data"), help="directory for the fixtures")
    p.add_argument("--allow-version-mismatch", action="store_true")
    p.add_argument("--keep-going", action="store_true",
                   help="write the fixtures that were made even if a check failed (still exits non-zero)")
    p.add_argument("--self-test", action="store_true", help="check the pure-Python reference only (no torch)")
    opts = p.parse_args()
    self_test()
    if opts.self_test:
        return 0
    try:
        hf = load_hf()
    except FixtureError as e:
        log(f"make_lsh_fixtures: FAILED: {e}")
        return 1
    torch, transformers = hf[0], hf[1]
    log(f"make_lsh_fixtures: {hf[4]}")
    version = tuple(int(x) for x in transformers.__version__.split(".")[:2] if x.isdigit())
    if version != REFERENCE_VERSION and not opts.allow_version_mismatch:
        log(f"make_lsh_fixtures: FAILED: transformers {transformers.__version__}, reference "
            f"{REFERENCE_VERSION[0]}.{REFERENCE_VERSION[1]} (--allow-version-mismatch to go on)")
        return 1
    torch.set_grad_enabled(False)
    results, failures = [], []
    for case in CASES:
        try:
            text, summary, problems = run_case(hf, case, opts)
            results.append((case["name"], text, summary))
            for pr in problems:
                failures.append((case["name"], pr))
        except Exception as e:  # noqa: BLE001 - every failure is reported, then the run fails
            import traceback
            traceback.print_exc()
            failures.append((case["name"], f"{type(e).__name__}: {e}"))
    total = sum(len(t.encode()) for _, t, _ in results)
    if total > MAX_TOTAL_BYTES:
        failures.append(("all", f"fixtures total {total} bytes > {MAX_TOTAL_BYTES}"))
    log("\nsummary:")
    for name, text, summary in results:
        log(f"  ok      {name:26s} {len(text.encode()):7d} B  {summary}")
    for name, why in failures:
        log(f"  FAILED  {name:26s} {why}")
    if failures and not opts.keep_going:
        log(f"make_lsh_fixtures: {len(failures)} failure(s); nothing written")
        return 1
    out_dir = os.path.abspath(opts.out)
    os.makedirs(out_dir, exist_ok=True)
    for name, text, _ in results:
        path = os.path.join(out_dir, name + ".txt")
        with open(path + ".tmp", "w", encoding="ascii", newline="\n") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    log(f"make_lsh_fixtures: wrote {len(results)} fixtures, {total} bytes, to {out_dir}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
