#!/usr/bin/env python3
"""Plots the predicted decode over several GPUs (`kimi-lab simulate --gpus ...`, parallel.csv):
(a) time per output token at batch 1 against the GPU count, (b) decoding throughput at the
largest batch that fits the host, one line per model and context, log-2 x.

Usage: plot_parallel.py CSV OUT_PREFIX [--title TEXT]   (writes OUT_PREFIX.{png,svg} atomically).
Needs python3 with matplotlib (Debian: python3-matplotlib).
"""
import argparse
import csv
import sys

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit(f"plot_parallel.py: matplotlib is not installed for {sys.executable}")

from plot_simulator import COLOURS, NAMES, context_label, save

STYLES = ["-", "--", ":", "-."]  # one per context, in increasing order


def lines(rows, pick):
    """{(model, context): [(gpus, row)]} of the rows `pick` keeps, sorted by GPU count."""
    out = {}
    for r in rows:
        if pick(r):
            out.setdefault((r["model"], int(r["context"])), []).append((int(r["gpus"]), r))
    return {k: sorted(v, key=lambda p: p[0]) for k, v in out.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", help="parallel.csv of kimi-lab simulate --gpus")
    parser.add_argument("out_prefix", help="output path without extension")
    parser.add_argument("--title", default="Kimi-Linear-48B decoding over several GPUs")
    a = parser.parse_args()
    try:
        with open(a.csv) as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        sys.exit(f"plot_parallel.py: {a.csv}: {e.strerror}")
    need = {"model", "gpus", "context", "batch", "max_batch", "tpot_ms", "tokens_per_s"}
    if not rows or not need <= set(rows[0]):
        sys.exit(f"plot_parallel.py: {a.csv}: expected columns {', '.join(sorted(need))}")
    contexts = sorted({int(r["context"]) for r in rows})
    style = {c: STYLES[i % len(STYLES)] for i, c in enumerate(contexts)}
    one = lines(rows, lambda r: r["batch"] == "1")
    most = lines(rows, lambda r: r["batch"] == r["max_batch"] and r["fits"] == "1")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, data, key, label in ((ax1, one, "tpot_ms", "TPOT at batch 1 (ms)"),
                                 (ax2, most, "tokens_per_s", "tokens/s at the largest batch")):
        for (model, context), pts in sorted(data.items()):
            ax.plot([g for g, _ in pts], [float(r[key]) for _, r in pts], style[context],
                    marker="o", color=COLOURS.get(model, "grey"),
                    label=f"{NAMES.get(model, model)}, {context_label(context, None)}")
        ax.set_xscale("log", base=2)
        gpus = sorted({int(r["gpus"]) for r in rows})
        ax.set_xticks(gpus, [str(g) for g in gpus])
        ax.set_xlabel("GPUs (tensor + expert parallel, one host)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    ax2.set_yscale("log")
    ax1.set_title("(a) time per output token, batch 1")
    ax2.set_title("(b) throughput, largest batch that fits")
    ax2.legend(fontsize=7, loc="best")
    fig.suptitle(a.title + " (predicted; link assumed)")
    save(fig, a.out_prefix)


if __name__ == "__main__":
    main()
