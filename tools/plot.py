#!/usr/bin/env python3
"""Plots kimi-lab runs: loss vs step, eval accuracy vs step (one panel per eval length) and
peak accuracy vs sequence length (one line per mixer, best run per point), after the tech
report's Figure 4 and zoology's accuracy grid (STYLE.md item 13). Fixed colours per mixer.

Usage: plot.py OUT_PREFIX RUN_DIR [RUN_DIR ...]   (writes OUT_PREFIX_{loss,acc_steps,acc_len}
.{png,svg}). Needs python3 with matplotlib (Debian: /usr/bin/python3 + python3-matplotlib).
"""
import argparse
import csv
import math
import os
import sys

try:
    import matplotlib
    import matplotlib.colors
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter
except ImportError:
    sys.exit(f"plot.py: matplotlib is not installed for {sys.executable}; "
             "try /usr/bin/python3 tools/plot.py ...")

# Colours and markers follow the tech report's Figure 4 where it has them (KDA, GDN, Mamba2).
STYLES = {
    "kda": ("#5b5bf0", "p", "-"),
    "gdn": ("#138d8d", "*", "--"),
    "mamba2": ("#ff8c1a", ">", "--"),
    "deltanet": ("#c2185b", "v", "-."),
    "attention": ("#444444", "s", ":"),
    "mla": ("#8d6e00", "D", ":"),
    "hybrid": ("#d62728", "^", "-"),
}
LABELS = {"kda": "KDA", "gdn": "GDN", "mamba2": "Mamba2", "deltanet": "DeltaNet",
          "attention": "Attention", "mla": "MLA"}
MIXER_ORDER = ["kda", "gdn", "deltanet", "mamba2", "attention", "mla"]


def read_config(run_dir):
    """The resolved config.yaml as nested dicts (PyYAML if present, else a 3-level reader of
    the layout that to_yaml writes: two-space indents, one key per line)."""
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.exists(path):
        return {}
    try:
        import yaml
        with open(path) as f:
            return yaml.safe_load(f) or {}
    except ImportError:
        pass
    root = {}
    stack = [(-1, root)]
    with open(path) as f:
        for line in f:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            indent = len(line) - len(line.lstrip())
            key, _, value = line.strip().partition(":")
            while stack[-1][0] >= indent:
                stack.pop()
            parent = stack[-1][1]
            if value.strip():
                parent[key] = value.strip().strip('"')
            else:
                parent[key] = {}
                stack.append((indent, parent[key]))
    return root


def mixer_of(config):
    """(group, label): group picks the colour, label names the line."""
    model = config.get("model", {}) or {}
    hybrid = model.get("hybrid") or ""
    if hybrid:
        return "hybrid", f"Hybrid {hybrid}"
    mixer = model.get("mixer", "kda")
    if isinstance(mixer, str) and mixer.startswith("["):
        mixer = [m.strip() for m in mixer.strip("[]").split(",")]
    if isinstance(mixer, list):
        kinds = list(dict.fromkeys(mixer))
        if len(kinds) == 1:
            mixer = kinds[0]
        else:
            return "hybrid", "Hybrid " + "+".join(kinds)
    return mixer, LABELS.get(mixer, mixer)


def read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def load_run(run_dir):
    config = read_config(run_dir)
    name = config.get("name") or os.path.basename(os.path.normpath(run_dir))
    if config:
        group, label = mixer_of(config)
    else:
        print(f"plot.py: {run_dir} has no config.yaml; its mixer is unknown", file=sys.stderr)
        group, label = "other", str(name)
    return {
        "dir": run_dir, "name": str(name), "group": group, "label": label,
        "task": (config.get("task", {}) or {}).get("name"),
        "lr": (config.get("train", {}) or {}).get("lr"),
        "metrics": read_csv(os.path.join(run_dir, "metrics.csv")),
        "eval": read_csv(os.path.join(run_dir, "eval.csv")),
    }


def style(group):
    return STYLES.get(group, ("#17becf", "o", "-"))


def lighten(colour, amount):
    rgb = matplotlib.colors.to_rgb(colour)
    return tuple(c + (1 - c) * amount for c in rgb)


def assign_styles(runs):
    """Sorts runs by mixer then name; the 2nd, 3rd, ... run of one mixer (an lr sweep) keeps
    the mixer's hue, lighter and with another dash pattern, so every line stays tellable."""
    runs.sort(key=lambda r: (MIXER_ORDER.index(r["group"]) if r["group"] in MIXER_ORDER
                             else len(MIXER_ORDER), r["label"], r["name"]))
    seen = {}
    dashes = ["-", "--", ":", "-."]
    for run in runs:
        colour, marker, line = style(run["group"])
        i = seen.get(run["label"], 0)
        seen[run["label"]] = i + 1
        if i:
            colour = lighten(colour, min(0.6, 0.3 * i))
            line = dashes[(dashes.index(line) + i) % len(dashes)]
        run["style"] = (colour, marker, line)


def steps_formatter():
    return FuncFormatter(lambda x, _: f"{x / 1000:g}K" if abs(x) >= 1000 else f"{x:g}")


def save(fig, prefix, suffix):
    for ext in ("png", "svg"):
        path = f"{prefix}_{suffix}.{ext}"
        fig.savefig(path, dpi=150, bbox_inches="tight")
        print(f"wrote {path}")
    plt.close(fig)


def run_label(run, runs):
    """The mixer name, plus the run name when several runs share that mixer."""
    same = [r for r in runs if r["label"] == run["label"]]
    if len(same) == 1:
        return run["label"]
    has_lr = run["lr"] is not None and "lr=" not in run["name"]
    lr = f", lr {run['lr']}" if has_lr else ""
    return f"{run['label']} ({run['name']}{lr})"


def plot_loss(runs, prefix, title):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in runs:
        rows = [(num(r["step"]), num(r["loss"])) for r in run["metrics"]]
        if not rows:
            continue
        colour, _, line = run["style"]
        ax.plot(*zip(*rows), color=colour, linestyle=line, linewidth=1.6,
                label=run_label(run, runs))
    ax.set_xlabel("Training steps")
    ax.set_ylabel("Training loss")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(steps_formatter())
    ax.set_title(f"Training loss: {title}")
    ax.grid(True, which="both", alpha=0.35)
    ax.legend(frameon=True, fontsize=9)
    save(fig, prefix, "loss")


def eval_lengths(runs):
    return sorted({int(num(r["seq_len"])) for run in runs for r in run["eval"]})


def plot_acc_steps(runs, prefix, title):
    lengths = eval_lengths(runs)
    cols = min(len(lengths), 4)
    rows_n = math.ceil(len(lengths) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.6 * rows_n), squeeze=False,
                             sharey=True)
    for i, length in enumerate(lengths):
        ax = axes[i // cols][i % cols]
        for run in runs:
            pts = [(num(r["step"]), 100 * num(r["accuracy"])) for r in run["eval"]
                   if int(num(r["seq_len"])) == length]
            if not pts:
                continue
            colour, marker, line = run["style"]
            ax.plot(*zip(*sorted(pts)), color=colour, marker=marker, linestyle=line,
                    markersize=5, linewidth=1.6, markevery=max(1, len(pts) // 12),
                    label=run_label(run, runs))
        ax.set_title(f"Eval length {length}")
        ax.set_xlabel("Training steps")
        ax.xaxis.set_major_formatter(steps_formatter())
        ax.set_ylim(-3, 103)
        ax.grid(True, alpha=0.35)
        if i % cols == 0:
            ax.set_ylabel("Accuracy (%)")
    for j in range(len(lengths), rows_n * cols):
        axes[j // cols][j % cols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.suptitle(f"Eval accuracy vs training steps: {title}")
    fig.tight_layout()
    # Below the panels, clear of their axis labels; bbox_inches="tight" grows the figure to fit.
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 4), frameon=True,
               bbox_to_anchor=(0.5, 0.0))
    save(fig, prefix, "acc_steps")


def best_per_mixer(runs, lengths, final):
    """{label: (group, label, [acc% per length])}: per length the best run of that mixer (the best
    learning rate), scoring each run by its peak eval (or its last eval with final=True)."""
    out = {}
    for run in runs:
        scores = []
        for length in lengths:
            pts = sorted((num(r["step"]), 100 * num(r["accuracy"])) for r in run["eval"]
                         if int(num(r["seq_len"])) == length)
            if not pts:
                scores.append(math.nan)
            else:
                scores.append(pts[-1][1] if final else max(a for _, a in pts))
        key = run["label"]
        if key in out:
            prev = out[key][2]
            scores = [p if math.isnan(s) or (not math.isnan(p) and p >= s) else s
                      for p, s in zip(prev, scores)]
        out[key] = (run["group"], run["label"], scores)
    return out


def plot_acc_len(runs, prefix, title, final):
    lengths = eval_lengths(runs)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    table = best_per_mixer(runs, lengths, final)
    order = sorted(table, key=lambda k: (MIXER_ORDER.index(table[k][0])
                                         if table[k][0] in MIXER_ORDER else 99, k))
    for key in order:
        group, label, scores = table[key]
        colour, marker, line = style(group)
        ax.plot(lengths, scores, color=colour, marker=marker, linestyle=line, markersize=7,
                linewidth=1.8, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths)
    ax.set_xticklabels([str(n) for n in lengths])
    ax.minorticks_off()
    ax.set_ylim(-3, 103)
    ax.set_xlabel("Sequence length")
    ax.set_ylabel("Accuracy (%)")
    kind = "final" if final else "peak"
    ax.set_title(f"{kind.capitalize()} eval accuracy vs length: {title}")
    ax.grid(True, alpha=0.35)
    ax.legend(frameon=True, fontsize=9)
    save(fig, prefix, "acc_len")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_prefix", help="output path prefix, e.g. plots/mqar")
    parser.add_argument("run_dirs", nargs="+", help="run directories (config.yaml, metrics.csv, "
                        "eval.csv)")
    parser.add_argument("--final", action="store_true",
                        help="accuracy vs length from the last eval instead of the peak")
    args = parser.parse_args()
    runs = []
    for d in args.run_dirs:
        if not os.path.isdir(d):
            sys.exit(f"plot.py: run directory '{d}' does not exist")
        runs.append(load_run(d))
    assign_styles(runs)
    tasks = sorted({run["task"] for run in runs if run["task"]})
    title = ", ".join(tasks) or "runs"
    out_dir = os.path.dirname(args.out_prefix)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    plot_loss(runs, args.out_prefix, title)
    if any(run["eval"] for run in runs):
        plot_acc_steps(runs, args.out_prefix, title)
        plot_acc_len(runs, args.out_prefix, title, args.final)
    else:
        print("plot.py: no eval.csv rows in any run; accuracy plots skipped", file=sys.stderr)


if __name__ == "__main__":
    main()
