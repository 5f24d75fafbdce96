#!/usr/bin/python3
"""Draws the complexity demo's CSVs (benchmarks/complexity_demo.cpp) into one PNG of three panels:
time per call against L, throughput in tokens/s against L (both log-log, one line per kernel, colour by
family), and the approximate kernels' error against their budget. Prints the label of every line it drew,
one per line after "plotted:", so that a test can check that each kernel appears exactly once.

    plot_complexity.py DIR            reads DIR/complexity.csv and DIR/complexity_error.csv,
                                      writes DIR/complexity.png
Run with Debian's python3 (python3-matplotlib); no other package is needed.
"""
import csv
import sys
from collections import OrderedDict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

FAMILIES = OrderedDict([  # family -> (colour map, legend heading)
    ("exact", ("Greys", "exact (dense, causal)")),
    ("sparse", ("Blues", "sparse masks")),
    ("low-rank", ("Purples", "low-rank (Linformer)")),
    ("synthesizer", ("Oranges", "Synthesizer (own logits)")),
    ("linear", ("Greens", "linear (kernelized)")),
    ("lsh", ("Reds", "LSH (Reformer)")),
])
MARKERS = "osD^v<>ph*"
STYLES = ["-", "--", "-.", ":"]


def seconds_label(s, _pos=None):
    """A time tick in the unit that reads best: 10 us, 1 ms, 100 ms, 10 s."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:g} {unit}"
    return f"{s * 1e9:g} ns"


def count_label(n, _pos=None):
    """A count tick with a metric suffix: 512, 4K, 1M."""
    for suffix, scale in (("M", 2**20), ("K", 2**10)):
        if n >= scale:
            return f"{n / scale:g}{suffix}"
    return f"{n:g}"


def rate_label(r, _pos=None):
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if r >= scale:
            return f"{r / scale:g}{suffix}"
    return f"{r:g}"


def read_kernels(path):
    kernels = OrderedDict()  # name -> {"family": ..., "L": [...], "seconds": [...], "tps": [...]}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            k = kernels.setdefault(row["kernel"], {"family": row["family"], "L": [], "seconds": [], "tps": []})
            k["L"].append(int(row["L"]))
            k["seconds"].append(float(row["seconds"]))
            k["tps"].append(float(row["tokens_per_second"]))
    return kernels


def read_errors(path):
    series = OrderedDict()  # family label -> (budget name, [budget], [error])
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            name = row["budget"].split("=")[0].strip()
            s = series.setdefault(row["family"], (name, [], []))
            s[1].append(float(row["budget_value"]))
            s[2].append(float(row["error"]))
    return series


def style_of(kernels):
    """Each kernel's colour, marker and line style: shades of its family's colour map, in list order."""
    by_family = OrderedDict((f, [n for n, k in kernels.items() if k["family"] == f]) for f in FAMILIES)
    styles = {}
    for family, names in by_family.items():
        cmap = plt.get_cmap(FAMILIES[family][0])
        for i, name in enumerate(names):
            shade = 0.45 + 0.5 * (i + 1) / (len(names) + 1) if len(names) > 1 else 0.75
            styles[name] = dict(color=cmap(shade), marker=MARKERS[i % len(MARKERS)],
                                linestyle=STYLES[i % len(STYLES)])
    unknown = [n for n, k in kernels.items() if k["family"] not in FAMILIES]
    if unknown:
        sys.exit(f"plot_complexity.py: kernels of no known family: {unknown}")
    return by_family, styles


def log_axes(ax, ylabel, yformat):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(count_label))
    ax.yaxis.set_major_locator(LogLocator(base=10))
    ax.yaxis.set_major_formatter(FuncFormatter(yformat))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("sequence length L (tokens)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", axis="y", alpha=0.12)


def main(directory):
    kernels = read_kernels(f"{directory}/complexity.csv")
    errors = read_errors(f"{directory}/complexity_error.csv")
    by_family, styles = style_of(kernels)

    fig = plt.figure(figsize=(17, 11), dpi=110)
    grid = fig.add_gridspec(2, 3, width_ratios=[1, 1, 0.62], height_ratios=[1, 0.8], wspace=0.28, hspace=0.3)
    time_ax, rate_ax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    error_ax, legend_ax = fig.add_subplot(grid[1, 0:2]), fig.add_subplot(grid[:, 2])
    legend_ax.axis("off")

    plotted = []
    handles, labels = [], []
    for family, names in by_family.items():
        if not names:
            continue
        heading, = legend_ax.plot([], [], linestyle="none", marker="none")
        handles.append(heading)
        labels.append(FAMILIES[family][1])
        for name in names:
            k = kernels[name]
            line, = time_ax.plot(k["L"], k["seconds"], linewidth=1.6, markersize=4.5, **styles[name])
            rate_ax.plot(k["L"], k["tps"], linewidth=1.6, markersize=4.5, **styles[name])
            handles.append(line)
            labels.append("   " + name)
            plotted.append(name)

    log_axes(time_ax, "time per call", seconds_label)
    time_ax.set_title("time per call against L (log-log): slope 2 is quadratic, 1 linear")
    lengths = sorted({L for k in kernels.values() for L in k["L"]})
    lo, hi = lengths[0], lengths[-1]
    t_ref = min(k["seconds"][0] for k in kernels.values())
    t_top = max(max(k["seconds"]) for k in kernels.values())
    for slope, text in ((2, "∝ L²"), (1, "∝ L")):  # guides from the fastest first point, inside the data's range
        end = min(hi, lo * (t_top / t_ref) ** (1 / slope))
        time_ax.plot([lo, end], [t_ref, t_ref * (end / lo) ** slope], color="0.55", linewidth=0.9,
                     linestyle=(0, (1, 3)))
        time_ax.annotate(text, (end, t_ref * (end / lo) ** slope), fontsize=9, color="0.35", ha="left", va="center")
    log_axes(rate_ax, "throughput (tokens per second)", rate_label)
    rate_ax.set_title("throughput against L: flat is linear cost, falling is quadratic")

    for i, (family, (budget, x, y)) in enumerate(errors.items()):
        error_ax.plot(x, y, marker=MARKERS[i % len(MARKERS)], linestyle=STYLES[i % len(STYLES)], linewidth=1.6,
                      label=f"{family} (budget: {budget})")
    error_ax.set_xscale("log", base=2)
    error_ax.set_yscale("log")
    error_ax.xaxis.set_major_formatter(FuncFormatter(count_label))
    error_ax.set_xlabel("budget: Linformer's k, FAVOR+'s m (random features), LSH's hash rounds")
    error_ax.set_ylabel("‖out − exact‖ / ‖exact‖")
    error_ax.set_title("error against exact attention as the budget grows (L = 4096)")
    error_ax.grid(True, which="major", alpha=0.35)
    error_ax.legend(loc="lower left", fontsize=9, framealpha=0.9)  # the upper right holds Linformer k = 256

    legend = legend_ax.legend(handles, labels, loc="upper left", fontsize=9.5, frameon=False, handlelength=3)
    for text, label in zip(legend.get_texts(), labels):
        if not label.startswith("   "):
            text.set_fontweight("bold")
    fig.suptitle("salt: every kernel's cost against sequence length (d = 64, one head, float)", fontsize=14)
    out = f"{directory}/complexity.png"
    fig.savefig(out, bbox_inches="tight")
    for name in plotted:
        print(f"plotted: {name}")
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
