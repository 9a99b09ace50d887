#!/usr/bin/env python3
"""Plots decode efficiency against context, the hybrid and its all-MLA twin on one figure (the
tech report's Figure 1b / 7b): (a) time per output token, (b) decoding throughput, (c) the
hybrid's throughput over all-MLA's at each context (B=1 and each at its largest batch), log-x.
Reads the CSV of `kimi-lab simulate` (predictions, with measured_* columns when joined) or of
the engine's bench-infer (model, context, batch, tpot_ms, tokens_per_s); lines per model and
batch (B=1 and the largest batch that fits), measured values as open markers.

Usage: plot_simulator.py CSV OUT_PREFIX [--title TEXT] [--measured]   (writes OUT_PREFIX.{png,svg}
atomically). Needs python3 with matplotlib (Debian: python3-matplotlib).
"""
import argparse
import csv
import os
import sys

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter
except ImportError:
    sys.exit(f"plot_simulator.py: matplotlib is not installed for {sys.executable}")

# tools/plot.py's colours (tools/plot_runs/mixers.py): KDA blue for the hybrid, MLA brown for the
# baseline.
COLOURS = {"hybrid": "#5b5bf0", "all-mla": "#8d6e00"}
NAMES = {"hybrid": "Kimi Linear (hybrid)", "all-mla": "MLA (all layers)"}


def num(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def context_label(x, _):
    x = int(round(x))
    if x >= 1 << 20 and x % (1 << 20) == 0:
        return f"{x >> 20}M"
    if x >= 1 << 10 and x % (1 << 10) == 0:
        return f"{x >> 10}K"
    return str(x)


def series(rows):
    """{(model, label): [(context, tpot, tok/s, measured tpot, measured tok/s, batch)]} with
    label 'B=1', 'max batch' (batch == max_batch) or 'B=N'."""
    out = {}
    for r in rows:
        batch, most = int(r["batch"]), num(r.get("max_batch"))
        labels = []
        if batch == 1:
            labels.append("B=1")
        if most is not None and batch == int(most):
            labels.append("max batch")
        if not labels:
            labels.append(f"B={batch}")
        point = (int(r["context"]), num(r.get("tpot_ms")), num(r.get("tokens_per_s")),
                 num(r.get("measured_tpot_ms")), num(r.get("measured_tokens_per_s")), batch)
        for label in labels:
            out.setdefault((r["model"], label), []).append(point)
    return {k: sorted(v) for k, v in out.items()}


def save(fig, prefix):
    for ext in ("png", "svg"):
        path = f"{prefix}.{ext}"
        tmp = f"{path}.tmp{os.getpid()}"
        fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
        os.replace(tmp, path)
        print(f"wrote {path}")
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", help="simulate.csv or a bench-infer CSV")
    parser.add_argument("out_prefix", help="output path without extension")
    parser.add_argument("--title", default="Kimi-Linear-48B decoding")
    parser.add_argument("--measured", action="store_true",
                        help="the CSV's tpot_ms / tokens_per_s are measurements (bench-infer), "
                             "not predictions: the lines are labelled so")
    args = parser.parse_args()
    kind = "measured" if args.measured else "predicted"
    with open(args.csv, newline="") as f:
        # bench-infer's CSV opens with a '#' comment line (measured_csv.h reads it the same way)
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    if not rows:
        sys.exit(f"plot_simulator.py: {args.csv} has no rows")
    data = series(rows)
    fig, (ax_t, ax_r, ax_q) = plt.subplots(1, 3, figsize=(17, 4.6))
    styles = {"B=1": ("-", "o"), "max batch": ("--", "s")}
    for (model, label), pts in sorted(data.items(), key=lambda kv: (kv[0][0] != "hybrid", kv[0][1])):
        colour = COLOURS.get(model, "#444444")
        line, marker = styles.get(label, (":", "^"))
        ctx = [p[0] for p in pts]
        name = f"{NAMES.get(model, model)}, {label}"
        if label == "max batch":
            batches = sorted({p[5] for p in pts})
            name += f" ({batches[0]}-{batches[-1]})" if len(batches) > 1 else f" ({batches[0]})"
        for ax, i, mi in ((ax_t, 1, 3), (ax_r, 2, 4)):  # TPOT = step time, per sequence
            pred = [(c, p[i]) for c, p in zip(ctx, pts) if p[i] is not None]
            if pred:
                ax.plot(*zip(*pred), color=colour, linestyle=line, marker=marker, markersize=5,
                        linewidth=1.8, label=f"{name}, {kind}")
            meas = [(c, p[mi]) for c, p in zip(ctx, pts) if p[mi] is not None]
            if meas:
                ax.plot(*zip(*meas), color=colour, linestyle="none", marker=marker,
                        markersize=9, markerfacecolor="none", markeredgewidth=1.6,
                        label=f"{name}, measured")
    contexts = sorted({int(r["context"]) for r in rows})
    for label, line in (("B=1", "-"), ("max batch", "--")):
        hyb = {p[0]: p[2] for p in data.get(("hybrid", label), []) if p[2]}
        mla = {p[0]: p[2] for p in data.get(("all-mla", label), []) if p[2]}
        both = [c for c in contexts if c in hyb and c in mla]
        if both:
            ratio = [hyb[c] / mla[c] for c in both]
            ax_q.plot(both, ratio, color="#333333", linestyle=line, marker="o", markersize=5,
                      label=f"{label}, {kind}")
            ax_q.annotate(f"{ratio[-1]:.2f}x", (both[-1], ratio[-1]), textcoords="offset points",
                          xytext=(-10, 6), ha="right", fontsize=9)
    ax_q.axhline(1.0, color="#999999", linewidth=1)
    ax_q.legend(fontsize=9, loc="upper left")
    for ax, ylabel, title in ((ax_t, "Time per output token (ms)", "(a) TPOT vs context"),
                              (ax_r, "Decoding throughput (tokens/s)",
                               "(b) Throughput vs context"),
                              (ax_q, "Hybrid / all-MLA throughput", "(c) Speed-up vs context")):
        ax.set_xscale("log", base=2)
        if ax is not ax_q:
            ax.set_yscale("log")
        ax.set_xticks(contexts)
        ax.xaxis.set_major_formatter(FuncFormatter(context_label))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
        ax.set_xlabel("Context length (tokens in the cache)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = ax_t.get_legend_handles_labels()
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.legend(handles, labels, loc="upper center", ncol=2, frameon=True, fontsize=9,
               bbox_to_anchor=(0.5, 0.0))
    out_dir = os.path.dirname(args.out_prefix)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    save(fig, args.out_prefix)


if __name__ == "__main__":
    main()
