#!/usr/bin/env python3
"""Golden fixtures from HuggingFace transformers: LongformerSelfAttention and BigBirdBlockSparseAttention
run in float64 on small cases; salt's tests (tests/test_hf_fixtures.cpp) must reproduce their outputs.

    python3 tools/make_hf_fixtures.py --out tests/data

Needs torch, numpy and transformers (the reference is transformers 5.17); downloads nothing: every module is
built from a config object, its weights and inputs drawn from fixed seeds. Writes one text file per case,
tests/data/longformer_*.txt and tests/data/bigbird_*.txt, and prints a summary. Exits non-zero, writing
nothing, if any case fails a check.

File format (read by tests/fixtures.hpp): the first line is a '#' header with the versions; '#' lines are
comments; then records, each a line `name dim0 dim1 ...` (no dims: a scalar) followed by prod(dims) values in
C row-major order on the next lines (one innermost row per line), printed with '%.17g', which reads back
bit for bit. Records:

  every case   q, k, v, out  (heads, L, head_dim) float64: q/k/v exactly as HF's attention reads them
                             (after the projections), out the per-head context HF returns, before any output
                             projection;
               scale         what the dot product must be multiplied by (salt::dot_product{scale});
  Longformer   window        one-sided window w (HF's attention_window = 2 w);
               attention_window  HF's value, for the record;
               global        indices of the global tokens (possibly none);
  BigBird      block_size, random_blocks (r);
               rand_attn     (heads, L / block_size - 2, r): the random key blocks HF used, row i - 1 for query
                             block i (HuggingFace's rand_attn layout, which salt::bigbird takes as it is).

What the script does about HF's conventions:

  Longformer  Calls LongformerSelfAttention directly (eval mode, no dropout) with L a multiple of
    attention_window, so neither the module's assertion nor LongformerModel's padding comes into play. The
    attention_mask it gets is what LongformerModel would pass: 0 for local tokens, > 0 for global ones (then
    is_index_global_attn = mask > 0, is_index_masked = mask < 0). HF masks a global key out of the window band
    and adds it back as a global column, so it counts once. Global rows use separate projections
    (query_global, key_global, value_global); the fixture copies query/key/value's weights into them, so one
    q/k/v describes every row. HF divides q by sqrt(head_dim) before its matmul: the fixture's q is that
    divided q, and scale is 1. HF computes the softmax in float32 even for float64 input
    (softmax(..., dtype=torch.float32)); while the fixture is made, softmax calls that ask for a narrower
    dtype on float64 input are redirected to float64 (torch.nn.functional.softmax, torch.softmax,
    Tensor.softmax and any alias of them in the modeling module are patched, then restored), so the output
    is float64 throughout. The script reports how far HF's own float32-softmax output lies from it.

  BigBird  Calls BigBirdBlockSparseAttention directly, with L > (5 + 2 r) block_size (below that
    BigBirdModel switches to full attention) and L a multiple of block_size (no padding), all-ones masks
    built by BigBirdModel.create_masks_for_block_sparse_attn. It runs in training mode: in eval mode HF
    sets every random block to 0, so block 0 enters the softmax several times; in training mode the random
    blocks avoid the window and global blocks, so each allowed block counts once, which is salt's
    definition. Block-sparse attention has no dropout, so training mode changes nothing else. The table HF
    used is captured by wrapping the module's _bigbird_block_rand_mask(_with_head) (their return values) and
    torch_gather_b2 (the index tensor it gathers key/value blocks with); both captures must agree. HF
    multiplies q.k by 1/sqrt(head_dim) after the matmul: q is unscaled and scale = 1/sqrt(head_dim). HF's
    softmax there already runs in the input dtype; the same float64 guard is on anyway.

Checks (any failure: exit 1, nothing written): HF's output equals a plain float64 dense masked attention over
the recorded q/k/v, scale and pattern within 1e-12 (this also proves the softmax redirection took effect and
that no key counts twice); the BigBird table has no repeat of a window or global block; every value is
finite and reads back exactly; the fixtures together stay under 1 MiB.
"""
import argparse
import contextlib
import importlib
import inspect
import math
import os
import platform
import random
import sys

REFERENCE_VERSION = (5, 17)  # transformers release the fixtures are defined against
CONSISTENCY_TOL = 1e-12  # HF output against the float64 dense reference (salt's tests allow 1e-10)
MAX_TOTAL_BYTES = 1 << 20

LONGFORMER_CASES = [
    # L a multiple of attention_window (= 2 w); "3 globals" cases put one global inside another's window.
    dict(name="longformer_L32_g0", seq_len=32, hidden=16, heads=2, attention_window=8, global_tokens=[], seed=101),
    dict(name="longformer_L40_g1", seq_len=40, hidden=24, heads=2, attention_window=8, global_tokens=[0], seed=102),
    dict(name="longformer_L64_g3", seq_len=64, hidden=32, heads=2, attention_window=8, global_tokens=[0, 3, 41],
         seed=103),
    dict(name="longformer_L56_g3_end", seq_len=56, hidden=16, heads=2, attention_window=8,
         global_tokens=[20, 22, 55], seed=104),
]
BIGBIRD_CASES = [
    # L > (5 + 2 r) B so that BigBirdModel keeps block-sparse attention; L a multiple of B.
    dict(name="bigbird_L64_b4_r2", seq_len=64, hidden=16, heads=2, block_size=4, random_blocks=2, seed=201),
    dict(name="bigbird_L96_b4_r3", seq_len=96, hidden=16, heads=2, block_size=4, random_blocks=3, seed=202),
    dict(name="bigbird_L128_b8_r3", seq_len=128, hidden=16, heads=2, block_size=8, random_blocks=3, seed=203),
]


class FixtureError(RuntimeError):
    pass


def log(msg):
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------------------------
# Writing the text format (pure Python, so tests can build fake fixtures without numpy or torch).

def _flatten(values):
    """Nested lists / tuples of numbers -> (shape, flat list)."""
    if isinstance(values, (list, tuple)):
        if not values:
            return [0], []
        parts = [_flatten(v) for v in values]
        shapes = {tuple(s) for s, _ in parts}
        if len(shapes) != 1:
            raise FixtureError("ragged nested list")
        flat = [x for _, f in parts for x in f]
        return [len(values)] + list(parts[0][0]), flat
    return [], [values]


def format_value(x):
    x = float(x)
    if not math.isfinite(x):
        raise FixtureError(f"non-finite value {x!r}")
    s = "%.17g" % x
    if float(s) != x:
        raise FixtureError(f"{x!r} does not read back from {s!r}")
    return s


class FixtureWriter:
    """Builds one fixture file's text. Values: nested lists, a number, or anything with .tolist()."""

    def __init__(self, header):
        if "\n" in header:
            raise FixtureError("header must be one line")
        self.lines = ["# " + header]
        self.names = set()

    def comment(self, text):
        for line in text.splitlines():
            self.lines.append(("# " + line).rstrip())

    def record(self, name, values, shape=None):
        if not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise FixtureError(f"bad record name {name!r}")
        if name in self.names:
            raise FixtureError(f"record {name!r} written twice")
        self.names.add(name)
        if hasattr(values, "tolist"):
            values = values.tolist()
        got_shape, flat = _flatten(values)
        if shape is not None:  # explicit shape, e.g. (0,) for an empty list or (3, 0) for empty rows
            if math.prod(shape) != len(flat):
                raise FixtureError(f"record {name!r}: shape {shape} but {len(flat)} values")
            got_shape = list(shape)
        self.lines.append(" ".join([name] + [str(n) for n in got_shape]))
        if not flat:
            return
        row = got_shape[-1] if got_shape and got_shape[-1] > 0 else 1
        for i in range(0, len(flat), row):
            self.lines.append(" ".join(format_value(x) for x in flat[i:i + row]))

    def text(self):
        return "\n".join(self.lines) + "\n"


# --------------------------------------------------------------------------------------------------------------
# Finding HF's pieces, defensively.

class HF:
    """The imported libraries and the classes the script needs, each looked up under several names."""

    def __init__(self):
        try:
            import numpy
            import torch
        except ImportError as e:
            raise FixtureError(f"torch and numpy are needed ({e}); install them, then run again") from e
        try:
            import transformers
        except ImportError as e:
            raise FixtureError(f"transformers is needed ({e})") from e
        self.np, self.torch, self.transformers = numpy, torch, transformers
        self.longformer_module = self._module("transformers.models.longformer.modeling_longformer")
        self.bigbird_module = self._module("transformers.models.big_bird.modeling_big_bird")
        self.LongformerSelfAttention = self._find("LongformerSelfAttention", self.longformer_module)
        self.LongformerConfig = self._find("LongformerConfig", transformers, self.longformer_module,
                                           "transformers.models.longformer.configuration_longformer")
        self.BigBirdBlockSparseAttention = self._find("BigBirdBlockSparseAttention", self.bigbird_module)
        self.BigBirdConfig = self._find("BigBirdConfig", transformers, self.bigbird_module,
                                        "transformers.models.big_bird.configuration_big_bird")
        self.BigBirdModel = getattr(self.bigbird_module, "BigBirdModel", None)

    @staticmethod
    def _module(name):
        try:
            return importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - any import failure is fatal and must say which module
            raise FixtureError(f"cannot import {name}: {type(e).__name__}: {e}") from e

    def _find(self, attr, *places):
        for place in places:
            if isinstance(place, str):
                try:
                    place = importlib.import_module(place)
                except Exception:  # noqa: BLE001
                    continue
            if hasattr(place, attr):
                return getattr(place, attr)
        raise FixtureError(f"{attr} not found in {[getattr(p, '__name__', p) for p in places]}: did transformers "
                           f"{self.transformers.__version__} rename it?")

    def versions(self):
        return (f"transformers {self.transformers.__version__} | torch {self.torch.__version__} | "
                f"numpy {self.np.__version__} | python {platform.python_version()}")


def make_config(cls, **kwargs):
    config = cls(**kwargs)
    for key, value in kwargs.items():  # some configs ignore or transform kwargs: set them again and check
        try:
            setattr(config, key, value)
        except Exception as e:  # noqa: BLE001
            raise FixtureError(f"{cls.__name__}: cannot set {key}={value!r}: {e}") from e
    return config


def construct(cls, config, **kwargs):
    try:
        return cls(config, **kwargs)
    except TypeError as first:
        try:
            return cls(config, *kwargs.values())
        except TypeError:
            raise FixtureError(f"cannot construct {cls.__name__}(config, {kwargs}): {first}; "
                               f"__init__{inspect.signature(cls.__init__)}") from first


def call_with(module, positional, wanted, required):
    """Calls module(*positional, **kwargs) with the kwargs of `wanted` that its forward() accepts; every name in
    `required` must be accepted."""
    sig = inspect.signature(module.forward)
    params = sig.parameters
    takes_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    missing = [n for n in required if n not in params and not takes_var_kw]
    if missing:
        raise FixtureError(f"{type(module).__name__}.forward{sig} lacks {missing}: the installed transformers "
                           "changed its interface; update tools/make_hf_fixtures.py")
    kwargs = {k: v for k, v in wanted.items() if k in params or (takes_var_kw and k in required)}
    return module(*positional, **kwargs)


def first_tensor(torch, out, what):
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "to_tuple"):
        out = out.to_tuple()
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise FixtureError(f"{what} returned {type(out).__name__}, not a tensor or a tuple starting with one")


def tokens_by_features(t, seq_len, features, what):
    """A (L, 1, E), (1, L, E) or (L, E) tensor as (L, E)."""
    shape = tuple(t.shape)
    if shape == (seq_len, 1, features):
        return t[:, 0, :]
    if shape == (1, seq_len, features):
        return t[0]
    if shape == (seq_len, features):
        return t
    raise FixtureError(f"{what} has shape {shape}; expected (L, 1, E), (1, L, E) or (L, E) with L={seq_len}, "
                       f"E={features}")


def split_heads(t, heads):
    """(L, heads * d) -> (heads, L, d), splitting features head-major as HF's view(L, heads, d) does."""
    seq_len, features = t.shape
    return t.reshape(seq_len, heads, features // heads).permute(1, 0, 2).contiguous()


@contextlib.contextmanager
def capture_outputs(module, names):
    """Records (a clone of) the output of each named submodule on every call."""
    captured = {n: [] for n in names}
    handles = []
    for n in names:
        sub = getattr(module, n, None)
        if sub is None:
            raise FixtureError(f"{type(module).__name__} has no submodule {n!r}")

        def hook(_mod, _inp, out, n=n):
            captured[n].append(out.detach().clone())

        handles.append(sub.register_forward_hook(hook))
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


class Float64Softmax:
    """While active, a softmax asked to compute a float64 input in a narrower dtype computes in float64.
    Patches torch.nn.functional.softmax, torch.softmax, torch.Tensor.softmax and, in the given modules, any
    global name bound to one of them; restores everything on exit. `upgraded` counts redirected calls."""

    def __init__(self, torch, modules=()):
        self.torch, self.modules = torch, modules
        self.upgraded = 0
        self._restore = []

    def _fix(self, x, dtype):
        torch = self.torch
        if dtype is not None and isinstance(x, torch.Tensor) and x.dtype == torch.float64 and dtype != torch.float64:
            self.upgraded += 1
            return torch.float64
        return dtype

    def _wrap(self, original, dtype_position):
        def wrapper(*args, **kwargs):
            x = args[0] if args else kwargs.get("input", kwargs.get("self"))
            if "dtype" in kwargs:
                kwargs["dtype"] = self._fix(x, kwargs["dtype"])
            elif len(args) > dtype_position and isinstance(args[dtype_position], self.torch.dtype):
                args = args[:dtype_position] + (self._fix(x, args[dtype_position]),) + args[dtype_position + 1:]
            return original(*args, **kwargs)

        wrapper.__wrapped__ = original
        return wrapper

    def _set(self, owner, name, value):
        had = name in vars(owner)
        old = vars(owner).get(name)
        setattr(owner, name, value)
        self._restore.append((owner, name, had, old))

    def __enter__(self):
        torch = self.torch
        functional = torch.nn.functional
        originals = {
            id(functional.softmax): self._wrap(functional.softmax, 3),  # softmax(input, dim, _stacklevel, dtype)
            id(torch.softmax): self._wrap(torch.softmax, 2),  # softmax(input, dim, dtype)
        }
        tensor_softmax = torch.Tensor.softmax
        self._set(functional, "softmax", originals[id(functional.softmax)])
        self._set(torch, "softmax", originals[id(torch.softmax)])
        self._set(torch.Tensor, "softmax", self._wrap(tensor_softmax, 2))  # Tensor.softmax(self, dim, dtype)
        for module in self.modules:
            for name, value in list(vars(module).items()):
                if id(value) in originals:
                    self._set(module, name, originals[id(value)])
        return self

    def __exit__(self, *exc):
        for owner, name, had, old in reversed(self._restore):
            if had:
                setattr(owner, name, old)
            else:
                delattr(owner, name)
        self._restore.clear()
        return False


def init_linear(torch, linear, generator, gain=1.5):
    """Weights N(0, gain^2 / fan_in), biases N(0, 0.1^2): projections of unit inputs have entries of std `gain`,
    so scaled logits spread over a few units and the softmax is neither flat nor one-hot."""
    fan_in = linear.weight.shape[1]
    with torch.no_grad():
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=generator, dtype=torch.float64)
                            * (gain / math.sqrt(fan_in)))
        if linear.bias is not None:
            linear.bias.copy_(torch.randn(linear.bias.shape, generator=generator, dtype=torch.float64) * 0.1)


def dense_reference(torch, q, k, v, allowed, scale):
    """Float64 masked softmax attention: q, k, v (H, L, d), allowed (H or 1, L, L) bool -> (H, L, d)."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~allowed, float("-inf"))
    if not bool(allowed.any(dim=-1).all()):
        raise FixtureError("a query row sees no key: the cases are built so that never happens")
    scores = scores - scores.amax(dim=-1, keepdim=True)
    p = torch.exp(scores)
    p = p / p.sum(dim=-1, keepdim=True)
    return torch.matmul(p, v)


def max_abs(torch, a, b):
    return float((a - b).abs().max()) if a.numel() else 0.0


# --------------------------------------------------------------------------------------------------------------
# Longformer

def longformer_case(hf, case, opts):
    torch = hf.torch
    f64 = torch.float64
    name, L, E, H, W = case["name"], case["seq_len"], case["hidden"], case["heads"], case["attention_window"]
    glob = sorted(case["global_tokens"])
    if E % H or W % 2 or W <= 0:
        raise FixtureError(f"{name}: hidden % heads and attention_window % 2 must be 0, attention_window > 0")
    if L % W:
        raise FixtureError(f"{name}: L={L} must be a multiple of attention_window={W} (HF's module asserts it; "
                           "LongformerModel would pad)")
    d, w = E // H, W // 2
    log(f"[{name}] LongformerSelfAttention L={L} hidden={E} heads={H} head_dim={d} attention_window={W} "
        f"(one-sided {w}) global={glob}")
    torch.manual_seed(case["seed"])
    config = make_config(hf.LongformerConfig, hidden_size=E, num_attention_heads=H, intermediate_size=4 * E,
                         num_hidden_layers=1, attention_window=[W], attention_probs_dropout_prob=0.0,
                         hidden_dropout_prob=0.0)
    module = construct(hf.LongformerSelfAttention, config, layer_id=0)
    if getattr(module, "one_sided_attn_window_size", w) != w:
        raise FixtureError(f"{name}: HF's one-sided window is {module.one_sided_attn_window_size}, expected {w}")
    module = module.to(dtype=f64).eval()
    gen = torch.Generator().manual_seed(case["seed"])
    for n in ("query", "key", "value"):
        init_linear(torch, getattr(module, n), gen)
    # One q/k/v for every row: the global projections get the local weights.
    with torch.no_grad():
        for n in ("query", "key", "value"):
            local, other = getattr(module, n, None), getattr(module, n + "_global", None)
            if local is None or other is None:
                raise FixtureError(f"{name}: LongformerSelfAttention lacks {n} or {n}_global")
            other.weight.copy_(local.weight)
            if (local.bias is None) != (other.bias is None):
                raise FixtureError(f"{name}: {n} and {n}_global differ in having a bias")
            if local.bias is not None:
                other.bias.copy_(local.bias)
    hidden = torch.randn(1, L, E, generator=gen, dtype=f64)

    # What LongformerModel passes each layer: mask 0 local, > 0 global, < 0 padding (none here).
    attention_mask = torch.zeros(1, L, dtype=f64)
    if glob:
        attention_mask[0, glob] = 10000.0
    wanted = dict(attention_mask=attention_mask, is_index_masked=attention_mask < 0,
                  is_index_global_attn=attention_mask > 0, is_global_attn=bool(glob),
                  layer_head_mask=None, output_attentions=False)
    required = ("attention_mask", "is_index_masked", "is_index_global_attn", "is_global_attn")

    with torch.no_grad(), capture_outputs(module, ["query", "key", "value"]) as cap, \
            Float64Softmax(torch, [hf.longformer_module]) as softmax64:
        out = first_tensor(torch, call_with(module, (hidden,), wanted, required), "LongformerSelfAttention")
    with torch.no_grad():  # HF as shipped (float32 softmax), for the record
        out_hf32 = first_tensor(torch, call_with(module, (hidden,), wanted, required), "LongformerSelfAttention")
    for n in ("query", "key", "value"):
        if len(cap[n]) != 1:
            raise FixtureError(f"{name}: expected one call of self.{n}, saw {len(cap[n])}")
    if softmax64.upgraded == 0:
        raise FixtureError(f"{name}: no float32 softmax was redirected to float64; HF's code changed: check where "
                           "it computes the softmax")
    q_proj = tokens_by_features(cap["query"][0], L, E, "query projection")
    k_proj = tokens_by_features(cap["key"][0], L, E, "key projection")
    v_proj = tokens_by_features(cap["value"][0], L, E, "value projection")
    q = split_heads(q_proj / math.sqrt(d), H)  # HF: query_vectors /= math.sqrt(self.head_dim)
    k, v = split_heads(k_proj, H), split_heads(v_proj, H)
    out = split_heads(tokens_by_features(out, L, E, "LongformerSelfAttention output"), H)
    out_hf32 = split_heads(tokens_by_features(out_hf32, L, E, "LongformerSelfAttention output"), H)

    i = torch.arange(L)
    allowed = (i[:, None] - i[None, :]).abs() <= w
    if glob:
        g = torch.zeros(L, dtype=torch.bool)
        g[glob] = True
        allowed = allowed | g[:, None] | g[None, :]
    ref = dense_reference(torch, q, k, v, allowed[None], 1.0)
    err = max_abs(torch, out, ref)
    err32 = max_abs(torch, out_hf32, ref)
    log(f"[{name}] softmax calls redirected to float64: {softmax64.upgraded}; max|HF - float64 reference| = "
        f"{err:.3g}; HF with its float32 softmax: {err32:.3g}")
    rederived = False
    if not err <= CONSISTENCY_TOL:
        if opts.allow_rederived and err <= 1e-5:
            log(f"[{name}] WARNING: HF's output is {err:.3g} from the float64 reference; writing the reference "
                "(--allow-rederived)")
            out, rederived = ref, True
        else:
            raise FixtureError(f"{name}: HF's output differs from the float64 dense reference (window |i-j| <= {w} "
                               f"or either end global, each key once) by {err:.3g} > {CONSISTENCY_TOL:g}. "
                               "If about 1e-7, the float64 softmax redirection missed HF's softmax "
                               "(--allow-rederived writes the reference instead); if larger, HF's pattern differs")

    fw = FixtureWriter(f"salt HF fixture v1 | {name} | LongformerSelfAttention | {hf.versions()}")
    fw.comment(
        "transformers.models.longformer.modeling_longformer.LongformerSelfAttention, float64, batch 1, eval mode.\n"
        f"L = {L}, hidden = {E}, heads = {H}, head_dim = {d}; HF attention_window = {W}, one-sided window = {w}.\n"
        "Query i sees key j when |i - j| <= window, or i or j is global; a global key inside the window counts\n"
        "once (HF masks it out of the band and adds it as a global column).\n"
        "query_global/key_global/value_global hold copies of query/key/value's weights: one q/k/v for all rows.\n"
        "q is HF's query projection divided by sqrt(head_dim), as HF divides it before the matmul: scale = 1.\n"
        "out: the module's context (before the output projection), split into heads.\n"
        "HF's softmax asks for float32; it ran in float64 here (tools/make_hf_fixtures.py redirects it).\n"
        f"max |out - float64 dense reference| = {err:.3g}; HF with its float32 softmax differs by {err32:.3g}."
        + ("\nout is the float64 dense reference itself (--allow-rederived)." if rederived else ""))
    fw.record("scale", 1.0)
    fw.record("window", w)
    fw.record("attention_window", W)
    fw.record("global", glob, shape=(len(glob),))
    fw.record("q", q)
    fw.record("k", k)
    fw.record("v", v)
    fw.record("out", out)
    summary = f"L={L} H={H} d={d} w={w} global={glob} |HF-ref|={err:.2g} |HF32-ref|={err32:.2g}"
    return fw.text(), summary


# --------------------------------------------------------------------------------------------------------------
# BigBird

def bigbird_masks(hf, attention_mask, block_size):
    """blocked_encoder_mask, band_mask, from_mask, to_mask as BigBirdModel builds them."""
    make = getattr(hf.BigBirdModel, "create_masks_for_block_sparse_attn", None) if hf.BigBirdModel else None
    if make is not None:
        return make(attention_mask, block_size)
    log("  (BigBirdModel.create_masks_for_block_sparse_attn not found: building the masks as HF 4.x/5.x does)")
    torch = hf.torch
    b, L = attention_mask.shape
    blocked = attention_mask.view(b, L // block_size, block_size)
    exp_to = torch.cat([blocked[:, 1:-3], blocked[:, 2:-2], blocked[:, 3:-1]], dim=2)
    band = torch.einsum("blq,blk->blqk", blocked[:, 2:-2], exp_to).unsqueeze(1)
    return blocked, band, attention_mask.view(b, 1, L, 1), attention_mask.view(b, 1, 1, L)


@contextlib.contextmanager
def capture_random_table(module, np):
    """Records the random tables the module draws and the index tensor it gathers key/value blocks with."""
    got = {"drawn": [], "gathered": []}
    patched = []

    def wrap_draw(original, label):
        def wrapper(*args, **kwargs):
            result = original(*args, **kwargs)
            got["drawn"].append((label, [np.array(r, copy=True) for r in result] if isinstance(result, list)
                                 else np.array(result, copy=True)))
            return result
        return wrapper

    for label in ("_bigbird_block_rand_mask_with_head", "_bigbird_block_rand_mask"):
        original = getattr(module, label, None)
        if callable(original):
            setattr(module, label, wrap_draw(original, label))
            patched.append(label)
    gather = getattr(module, "torch_gather_b2", None)
    if callable(gather):
        def gather_wrapper(params, indices, *args, **kwargs):
            got["gathered"].append(indices.detach().clone())
            return gather(params, indices, *args, **kwargs)
        module.torch_gather_b2 = gather_wrapper
        patched.append("torch_gather_b2")
    try:
        yield got
    finally:
        for label in patched:
            if label in vars(module):
                delattr(module, label)


def table_from_capture(np, got, heads, rows, r, name):
    tables = []
    for label, result in got["drawn"]:
        if label == "_bigbird_block_rand_mask_with_head":
            tables.append(("drawn", np.stack(result, axis=0)))
    plain = [res for label, res in got["drawn"] if label == "_bigbird_block_rand_mask"]
    if plain:  # the L in {1024, 3072, 4096} path: one call per head, rows cut to nb - 2
        tables.append(("drawn", np.stack([p[:rows] for p in plain], axis=0)))
    if got["gathered"]:
        first = got["gathered"][0]
        for other in got["gathered"][1:]:
            if not bool((other == first).all()):
                raise FixtureError(f"{name}: key and value blocks were gathered with different tables")
        tables.append(("gathered", first[0].cpu().numpy()))  # (batch, heads, nb - 2, r) -> batch item 0
    if not tables:
        raise FixtureError(f"{name}: could not capture the random table (no _bigbird_block_rand_mask_with_head, "
                           "_bigbird_block_rand_mask or torch_gather_b2 call seen): HF's code changed")
    reference = tables[0][1]
    for how, t in tables:
        if t.shape != (heads, rows, r):
            raise FixtureError(f"{name}: {how} random table has shape {t.shape}, expected {(heads, rows, r)}")
        if not (t == reference).all():
            raise FixtureError(f"{name}: the drawn and the gathered random tables differ")
    return reference.astype(np.int64), [how for how, _ in tables]


def bigbird_case(hf, case, opts):
    torch, np = hf.torch, hf.np
    f64 = torch.float64
    name, L, E, H = case["name"], case["seq_len"], case["hidden"], case["heads"]
    B, r, seed = case["block_size"], case["random_blocks"], case["seed"]
    if E % H or L % B:
        raise FixtureError(f"{name}: hidden % heads and L % block_size must be 0")
    if L <= (5 + 2 * r) * B:
        raise FixtureError(f"{name}: L={L} <= (5 + 2 r) B = {(5 + 2 * r) * B}: BigBirdModel would use full attention")
    if L in (1024, 3072, 4096):
        log(f"[{name}] note: L={L} takes HF's old fixed plan (_bigbird_block_rand_mask)")
    d, nb = E // H, L // B
    log(f"[{name}] BigBirdBlockSparseAttention L={L} hidden={E} heads={H} head_dim={d} block={B} blocks={nb} "
        f"random={r} seed={seed}")
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    config = make_config(hf.BigBirdConfig, hidden_size=E, num_attention_heads=H, intermediate_size=4 * E,
                         num_hidden_layers=1, attention_type="block_sparse", block_size=B, num_random_blocks=r,
                         use_bias=True, attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.0,
                         max_position_embeddings=max(4096, L))
    module = construct(hf.BigBirdBlockSparseAttention, config, seed=seed)
    if hasattr(module, "seed"):
        module.seed = seed  # HF calls np.random.seed(self.seed) before drawing the table
    else:
        log(f"[{name}] WARNING: the module has no .seed; the table is whatever numpy draws (still captured)")
    module = module.to(dtype=f64)
    gen = torch.Generator().manual_seed(seed)
    for n in ("query", "key", "value"):
        if getattr(module, n, None) is None:
            raise FixtureError(f"{name}: BigBirdBlockSparseAttention lacks {n}")
        init_linear(torch, getattr(module, n), gen)
    hidden = torch.randn(1, L, E, generator=gen, dtype=f64)
    blocked, band, from_mask, to_mask = bigbird_masks(hf, torch.ones(1, L, dtype=f64), B)
    wanted = dict(band_mask=band, from_mask=from_mask, to_mask=to_mask, from_blocked_mask=blocked,
                  to_blocked_mask=blocked, output_attentions=False)
    required = ("band_mask", "from_mask", "to_mask", "from_blocked_mask", "to_blocked_mask")

    # Training mode: real random blocks (and no dropout exists in this module).
    module.train()
    with torch.no_grad(), capture_outputs(module, ["query", "key", "value"]) as cap, \
            capture_random_table(module, np) as got, Float64Softmax(torch, [hf.bigbird_module]) as softmax64:
        out = first_tensor(torch, call_with(module, (hidden,), wanted, required), "BigBirdBlockSparseAttention")
    for n in ("query", "key", "value"):
        if len(cap[n]) != 1:
            raise FixtureError(f"{name}: expected one call of self.{n}, saw {len(cap[n])}")
    table, sources = table_from_capture(np, got, H, nb - 2, r, name)
    if not (table != 0).any():
        raise FixtureError(f"{name}: the training-mode table is all zeros, HF's eval-mode table: is training "
                           "mode ignored?")
    if (table < 0).any() or (table >= nb).any():
        raise FixtureError(f"{name}: random block outside [0, {nb})")

    # Eval mode, for the record: HF's table is then all block 0.
    module.eval()
    with torch.no_grad(), capture_random_table(module, np) as got_eval, Float64Softmax(torch, [hf.bigbird_module]):
        out_eval = first_tensor(torch, call_with(module, (hidden,), wanted, required), "BigBirdBlockSparseAttention")
    eval_table, _ = table_from_capture(np, got_eval, H, nb - 2, r, name + " (eval)")
    eval_zeros = bool((eval_table == 0).all())

    # Every key block a query block reads, as HF lists them: no block may come twice (salt counts each once).
    for h in range(H):
        for i in range(1, nb - 1):
            if i == 1:
                listed = [0, 1, 2, nb - 1]
            elif i == nb - 2:
                listed = [0, nb - 3, nb - 2, nb - 1]
            else:
                listed = [0, i - 1, i, i + 1, nb - 1]
            listed += [int(x) for x in table[h, i - 1]]
            if len(set(listed)) != len(listed):
                raise FixtureError(f"{name}: head {h}, query block {i} reads key blocks {listed}: a block twice, "
                                   "which HF counts twice and salt once")

    q_proj = tokens_by_features(cap["query"][0], L, E, "query projection")
    k_proj = tokens_by_features(cap["key"][0], L, E, "key projection")
    v_proj = tokens_by_features(cap["value"][0], L, E, "value projection")
    q, k, v = split_heads(q_proj, H), split_heads(k_proj, H), split_heads(v_proj, H)
    out = split_heads(tokens_by_features(out, L, E, "BigBirdBlockSparseAttention output"), H)
    out_eval = split_heads(tokens_by_features(out_eval, L, E, "BigBirdBlockSparseAttention output"), H)
    scale = 1.0 / math.sqrt(d)  # HF: rsqrt_d = 1 / math.sqrt(attention_head_size), applied after q.k

    blocks = torch.zeros(H, nb, nb, dtype=torch.bool)
    bi = torch.arange(nb)
    blocks |= ((bi[:, None] - bi[None, :]).abs() <= 1)[None]
    blocks[:, [0, nb - 1], :] = True
    blocks[:, :, [0, nb - 1]] = True
    for h in range(H):
        for i in range(1, nb - 1):
            blocks[h, i, torch.as_tensor(table[h, i - 1], dtype=torch.long)] = True
    allowed = blocks.repeat_interleave(B, dim=1).repeat_interleave(B, dim=2)
    ref = dense_reference(torch, q, k, v, allowed, scale)
    err = max_abs(torch, out, ref)
    err_eval = max_abs(torch, out_eval, ref)
    log(f"[{name}] table captured from {sources}; max|HF - float64 reference| = {err:.3g}; softmax calls "
        f"redirected: {softmax64.upgraded}; eval-mode table all zeros: {eval_zeros}, eval-mode output differs by "
        f"{err_eval:.3g}")
    if not err <= CONSISTENCY_TOL:
        raise FixtureError(f"{name}: HF's output differs from the float64 dense reference (global blocks 0 and "
                           f"{nb - 1}, window of 3 blocks, the captured random blocks, each once) by {err:.3g} > "
                           f"{CONSISTENCY_TOL:g}")

    fw = FixtureWriter(f"salt HF fixture v1 | {name} | BigBirdBlockSparseAttention | {hf.versions()}")
    fw.comment(
        "transformers.models.big_bird.modeling_big_bird.BigBirdBlockSparseAttention, float64, batch 1,\n"
        "training mode (the module has no dropout; eval mode would point every random block at block 0).\n"
        f"L = {L}, hidden = {E}, heads = {H}, head_dim = {d}, block_size = {B}, blocks = {nb}, random_blocks = {r}, "
        f"HF seed = {seed}.\n"
        "Query block i sees key block j when i or j is 0 or blocks - 1, |i - j| <= 1, or j is in rand_attn[h][i - 1].\n"
        "rand_attn: the table HF used, captured in training mode; no entry repeats a window or global block.\n"
        "q is unscaled: HF multiplies q.k by 1/sqrt(head_dim) after the matmul, recorded as scale.\n"
        "out: the module's context (before the output projection), split into heads.\n"
        f"max |out - float64 dense reference| = {err:.3g}; HF's eval mode (table all zeros: {eval_zeros}) gives an "
        f"output {err_eval:.3g} away.")
    fw.record("scale", scale)
    fw.record("block_size", B)
    fw.record("random_blocks", r)
    fw.record("rand_attn", table.tolist(), shape=(H, nb - 2, r))
    fw.record("q", q)
    fw.record("k", k)
    fw.record("v", v)
    fw.record("out", out)
    summary = (f"L={L} H={H} d={d} B={B} r={r} table {H}x{nb - 2}x{r} |HF-ref|={err:.2g} "
               f"(eval-mode HF differs by {err_eval:.2g})")
    return fw.text(), summary


# --------------------------------------------------------------------------------------------------------------

def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(here, "..", "tests", "data"), help="directory for the fixtures")
    p.add_argument("--allow-version-mismatch", action="store_true",
                   help=f"run with a transformers other than {REFERENCE_VERSION[0]}.{REFERENCE_VERSION[1]}.x")
    p.add_argument("--allow-rederived", action="store_true",
                   help="for Longformer, if HF's softmax could not be made float64, write the float64 dense "
                        "reference (which HF must match to float32 accuracy) instead of failing")
    opts = p.parse_args()

    try:
        hf = HF()
    except FixtureError as e:
        log(f"make_hf_fixtures: FAILED: {e}")
        return 1
    log(f"make_hf_fixtures: {hf.versions()}")
    try:
        version = tuple(int(x) for x in hf.transformers.__version__.split(".")[:2])
    except ValueError:
        version = None
    if version != REFERENCE_VERSION:
        msg = (f"transformers {hf.transformers.__version__} is installed but the reference is "
               f"{REFERENCE_VERSION[0]}.{REFERENCE_VERSION[1]}")
        if not opts.allow_version_mismatch:
            log(f"make_hf_fixtures: FAILED: {msg} (--allow-version-mismatch to go on)")
            return 1
        log(f"make_hf_fixtures: WARNING: {msg}; the headers record the version used")
    hf.torch.set_grad_enabled(False)

    results, failures = [], []
    for make, cases in ((longformer_case, LONGFORMER_CASES), (bigbird_case, BIGBIRD_CASES)):
        for case in cases:
            try:
                text, summary = make(hf, case, opts)
                results.append((case["name"], text, summary))
            except Exception as e:  # noqa: BLE001 - every failure is reported, then the run fails
                import traceback
                traceback.print_exc()
                failures.append((case["name"], f"{type(e).__name__}: {e}"))
                log(f"[{case['name']}] FAILED: {type(e).__name__}: {e}")

    total = sum(len(text.encode()) for _, text, _ in results)
    if total > MAX_TOTAL_BYTES:
        failures.append(("all", f"fixtures total {total} bytes > {MAX_TOTAL_BYTES}"))
    log("\nsummary:")
    for name, text, summary in results:
        log(f"  ok      {name:24s} {len(text.encode()):7d} B  {summary}")
    for name, why in failures:
        log(f"  FAILED  {name:24s} {why}")
    if failures:
        log(f"make_hf_fixtures: {len(failures)} failure(s); nothing written")
        return 1

    out_dir = os.path.abspath(opts.out)
    os.makedirs(out_dir, exist_ok=True)
    for name, text, _ in results:
        path = os.path.join(out_dir, name + ".txt")
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="ascii", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    log(f"make_hf_fixtures: wrote {len(results)} fixtures, {total} bytes, to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
