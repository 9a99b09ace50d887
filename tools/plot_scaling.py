#!/usr/bin/env python3
"""Plots a scaling sweep as the tech report's Figure 5: validation loss against training compute
(PFLOP/s-days), log-log, one colour per architecture. Every finished run is a faint dot, the
lower envelope is joined and ringed, and the fitted L = a C^-b + c (solid) and the paper's form
a C^-b (dashed) are drawn over the envelope's compute range, extended a little both ways.

Usage: plot_scaling.py DIR [--title TEXT]   (reads DIR/scaling_points.csv and scaling_fit.csv
written by `kimi-lab scaling`; writes DIR/scaling.{png,svg} atomically). Needs python3 with
matplotlib (Debian: python3-matplotlib).
"""
import argparse
import csv
import math
import os
import sys

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter
except ImportError:
    sys.exit(f"plot_scaling.py: matplotlib is not installed for {sys.executable}")

# tools/plot.py's (tools/plot_runs/mixers.py) and plot_simulator.py's colours: KDA blue for the
# hybrid, MLA brown.
COLOURS = {"kda:mla=3:1": "#5b5bf0", "all-mla": "#8d6e00"}
OTHER_COLOURS = ["#2a9d8f", "#e76f51", "#6a4c93", "#444444"]
NAMES = {"kda:mla=3:1": "Kimi Linear (3:1 KDA:MLA)", "all-mla": "MLA (all layers)"}


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def colour_of(arch, order):
    if arch in COLOURS:
        return COLOURS[arch]
    return OTHER_COLOURS[order.index(arch) % len(OTHER_COLOURS)]


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
    parser.add_argument("dir", help="the output folder of kimi-lab scaling")
    parser.add_argument("--title", default="Scaling law (Figure 5, scaled down)")
    args = parser.parse_args()
    points = read_csv(os.path.join(args.dir, "scaling_points.csv"))
    fits = read_csv(os.path.join(args.dir, "scaling_fit.csv"))
    archs = sorted({p["arch"] for p in points}, key=lambda a: (a != "all-mla", a))

    fig, ax = plt.subplots(figsize=(7.0, 4.8))
    for arch in archs:
        colour = colour_of(arch, archs)
        mine = [p for p in points if p["arch"] == arch]
        xs = [float(p["pflops_days"]) for p in mine]
        ys = [float(p["loss"]) for p in mine]
        ax.scatter(xs, ys, s=14, color=colour, alpha=0.35, linewidths=0)
        env = sorted((float(p["pflops_days"]), float(p["loss"])) for p in mine
                     if p["on_envelope"] == "1")
        ax.plot([e[0] for e in env], [e[1] for e in env], "o", color=colour, markersize=6,
                markerfacecolor="none", markeredgewidth=1.3)
        for f in fits:
            if f["arch"] != arch:
                continue
            a, b, c = num(f["a"]), num(f["b"]), num(f["c"]) or 0.0
            lo, hi = num(f["compute_lo_pflops_days"]), num(f["compute_hi_pflops_days"])
            if None in (a, b, lo, hi):
                continue
            span = math.log(hi / lo)
            grid = [lo * math.exp(span * (i / 99 * 1.2 - 0.1)) for i in range(100)]
            saturating = f["form"] == "a*C^-b+c"
            label = (f"{NAMES.get(arch, arch)}: {a:.3g} C^-{b:.3g} + {c:.3g}" if saturating
                     else f"  a C^-b: {a:.3g} C^-{b:.3g}")
            ax.plot(grid, [a * x ** (-b) + c for x in grid], "-" if saturating else "--",
                    color=colour, linewidth=1.8 if saturating else 1.0, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    # Losses span a narrow range: plain numbers read better than 9 x 10^0 on a log axis.
    plain = FuncFormatter(lambda y, _: f"{y:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.set_xlabel("training compute (PFLOP/s-days)")
    ax.set_ylabel("validation loss (nats / token)")
    ax.set_title(args.title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7.5, loc="upper right")
    ax.text(0.01, 0.01, "dots: every run; rings: lower envelope (fitted)", fontsize=7,
            transform=ax.transAxes, alpha=0.7)
    save(fig, os.path.join(args.dir, "scaling"))


if __name__ == "__main__":
    main()
