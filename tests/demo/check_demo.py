#!/usr/bin/python3
"""What CI can check of the demo's picture without eyes: a short run of salt_demo, then
scripts/plot_complexity.py on its CSVs. The CSV must hold a row per kernel per length of its ladder
(512, 1024, ... doubling, at least 4 lengths each), the plot must draw every kernel exactly once under its
own name (no split names), and the PNG must be a real, non-trivial picture.

    check_demo.py SALT_DEMO PLOT_SCRIPT OUT_DIR
"""
import csv
import struct
import subprocess
import sys
from collections import OrderedDict


def fail(message):
    sys.exit(f"check_demo.py: {message}")


def main(demo, plot, out):
    kernels = subprocess.run([demo, "--list"], check=True, capture_output=True, text=True).stdout.splitlines()
    if len(kernels) < 20 or len(set(kernels)) != len(kernels):
        fail(f"salt_demo --list gave {len(kernels)} names, {len(set(kernels))} distinct: {kernels}")
    subprocess.run([demo, "--max-seconds", "5", "--max-length", "8192", "--out", out], check=True,
                   stdout=subprocess.DEVNULL)

    lengths = OrderedDict()
    with open(f"{out}/complexity.csv", newline="") as f:
        for row in csv.DictReader(f):
            lengths.setdefault(row["kernel"], []).append(int(row["L"]))
            for column in ("seconds", "tokens_per_second", "gflops", "extra_bytes"):
                if not float(row[column]) > 0:
                    fail(f"{row['kernel']} at L = {row['L']}: {column} = {row[column]}")
    if list(lengths) != kernels:
        fail(f"the CSV's kernels {list(lengths)} are not the demo's {kernels}")
    for name, ls in lengths.items():
        ladder = [512 * 2**i for i in range(len(ls))]
        if ls != ladder or len(ls) < 4:
            fail(f"{name}: lengths {ls}, expected at least 4 of 512, 1024, ... in order")
    with open(f"{out}/complexity_error.csv", newline="") as f:
        errors = list(csv.DictReader(f))
    budgets = {row["family"] for row in errors}
    if len(budgets) < 3 or any(not float(row["error"]) > 0 for row in errors):
        fail(f"the error table holds {len(errors)} rows of {sorted(budgets)}")

    printed = subprocess.run([plot, out], check=True, capture_output=True, text=True).stdout.splitlines()
    plotted = [line[len("plotted: "):] for line in printed if line.startswith("plotted: ")]
    if sorted(plotted) != sorted(kernels):
        fail(f"the plot drew {plotted}, not each of {kernels} once")

    with open(f"{out}/complexity.png", "rb") as f:
        png = f.read()
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        fail("complexity.png is not a PNG")
    width, height = struct.unpack(">II", png[16:24])
    if width < 1200 or height < 800 or len(png) < 100_000:
        fail(f"complexity.png is {width} x {height}, {len(png)} bytes: too small to hold the three panels")
    print(f"demo picture: {len(kernels)} kernels, {sum(map(len, lengths.values()))} rows, "
          f"{len(errors)} error rows, {width} x {height} PNG of {len(png)} bytes")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
