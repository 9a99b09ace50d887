#!/usr/bin/env python3
"""Plots kimi-lab runs: loss vs step, eval accuracy vs step (one panel per eval length) and
peak accuracy vs sequence length (one line per mixer, best lr per point), after the tech
report's Figure 4 and zoology's accuracy grid (STYLE.md item 13). Fixed colours per mixer.

Runs that differ only in train.seed are one setting: drawn as the mean over its seeds with a
band (curves) or error bars (accuracy vs length) of one standard deviation, labelled "mean of N
seeds"; the best lr per mixer and length is chosen on that mean. One seed's maximum is never
drawn as a result. When the runs differ in training length (the paper's sweep) accuracy is
plotted against the training length, each run scored at its own length, and OUT_PREFIX_figure4
lays out the paper's Figure 4: per task, accuracy vs training length above accuracy vs steps
at length 1024.

Usage: plot.py OUT_PREFIX RUN_DIR [RUN_DIR ...]   (writes OUT_PREFIX_{loss,acc_steps,acc_len}
.{png,svg}, OUT_PREFIX_acc_len.csv with the plotted numbers, and OUT_PREFIX_figure4.{png,svg}).
Needs python3 with matplotlib (Debian: /usr/bin/python3 + python3-matplotlib).
"""
import argparse
import csv
import json
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


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def dig(config, dotted, default=None):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def load_run(run_dir):
    config = read_config(run_dir)
    name = config.get("name") or os.path.basename(os.path.normpath(run_dir))
    if config:
        group, label = mixer_of(config)
    else:
        print(f"plot.py: {run_dir} has no config.yaml; its mixer is unknown", file=sys.stderr)
        group, label = "other", str(name)
    # The seed group: the config without its seed, name and out_dir. Runs that differ only in
    # train.seed are one setting, drawn as their mean (never as the best seed).
    key_config = json.loads(json.dumps(config, default=str))
    for dotted in ("train.seed", "name", "out_dir"):
        parent = dig(key_config, dotted.rpartition(".")[0]) if "." in dotted else key_config
        if isinstance(parent, dict):
            parent.pop(dotted.rpartition(".")[2], None)
    summary = read_json(os.path.join(run_dir, "summary.json"))
    return {
        "dir": run_dir, "name": str(name), "group": group, "label": label,
        "task": (config.get("task", {}) or {}).get("name"),
        "lr": dig(config, "train.lr"),
        "seq_len": int(num(dig(config, "train.seq_len", "nan"))) if not math.isnan(
            num(dig(config, "train.seq_len", "nan"))) else None,
        "seed": dig(config, "train.seed"),
        "steps": int(num(dig(config, "train.steps", "nan"))) if not math.isnan(
            num(dig(config, "train.steps", "nan"))) else None,
        "key": json.dumps(key_config, sort_keys=True),
        "stopped_early": bool(summary.get("stopped_early", False)),
        "metrics": read_csv(os.path.join(run_dir, "metrics.csv")),
        "eval": read_csv(os.path.join(run_dir, "eval.csv")),
    }


def style(group):
    return STYLES.get(group, ("#17becf", "o", "-"))


def lighten(colour, amount):
    rgb = matplotlib.colors.to_rgb(colour)
    return tuple(c + (1 - c) * amount for c in rgb)


def make_settings(runs):
    """Groups runs by setting (config without seed); each setting has its runs (seeds)."""
    by_key = {}
    for run in runs:
        by_key.setdefault(run["key"], []).append(run)
    settings = []
    for key, members in by_key.items():
        first = members[0]
        settings.append({"key": key, "runs": members, "group": first["group"],
                         "label": first["label"], "name": first["name"], "lr": first["lr"],
                         "task": first["task"], "seq_len": first["seq_len"],
                         "seeds": len(members)})
    return settings


def assign_styles(settings):
    """Sorts settings by mixer then name; the 2nd, 3rd, ... setting of one mixer (an lr sweep)
    keeps the mixer's hue, lighter and with another dash pattern, so every line stays tellable."""
    settings.sort(key=lambda r: (MIXER_ORDER.index(r["group"]) if r["group"] in MIXER_ORDER
                                 else len(MIXER_ORDER), r["label"], r["name"]))
    seen = {}
    dashes = ["-", "--", ":", "-."]
    # One mixer family only (Table 1's hybrid rows, an ablation): shades of one hue cannot tell
    # nine lines apart, so each setting gets its own colour of a qualitative palette.
    if len({st["group"] for st in settings}) == 1 and len(settings) > 2:
        palette = matplotlib.colormaps["tab10"].colors
        for i, st in enumerate(settings):
            _, marker, _ = style(st["group"])
            st["style"] = (palette[i % 10], marker, dashes[(i // 10) % len(dashes)])
        return
    for st in settings:
        colour, marker, line = style(st["group"])
        i = seen.get(st["label"], 0)
        seen[st["label"]] = i + 1
        if i:
            colour = lighten(colour, min(0.6, 0.3 * i))
            line = dashes[(dashes.index(line) + i) % len(dashes)]
        st["style"] = (colour, marker, line)


def steps_formatter():
    return FuncFormatter(lambda x, _: f"{x / 1000:g}K" if abs(x) >= 1000 else f"{x:g}")


def save(fig, prefix, suffix):
    for ext in ("png", "svg"):
        path = f"{prefix}_{suffix}.{ext}"
        fig.savefig(path, dpi=150, bbox_inches="tight")
        print(f"wrote {path}")
    plt.close(fig)


def seeds_text(n):
    return f"mean of {n} seeds" if n > 1 else "1 seed"


def setting_label(st, settings):
    """The mixer name, plus what tells settings of one mixer apart, plus the seed count."""
    same = [s for s in settings if s["label"] == st["label"]]
    base = st["label"]
    if len(same) > 1:
        name = ",".join(p for p in st["name"].split(",") if not p.startswith("seed="))
        has_lr = st["lr"] is not None and "lr=" not in name
        base += f" ({name}{', lr ' + str(st['lr']) if has_lr else ''})"
    return base + (f" [{seeds_text(st['seeds'])}]" if st["seeds"] > 1 else "")


def mean_curve(runs, points_of):
    """[(step, mean, sd, n)] over the runs (seeds): steps every run has; a run that stopped early
    (target accuracy reached) holds its last value afterwards."""
    series = [sorted(points_of(run)) for run in runs]
    series = [(s, run["stopped_early"]) for s, run in zip(series, runs) if s]
    if not series:
        return []
    steps = sorted({x for s, _ in series for x, _ in s})
    out = []
    for step in steps:
        vals = []
        for s, stopped in series:
            hit = [y for x, y in s if x == step]
            if hit:
                vals.append(hit[0])
            elif stopped and step > s[-1][0]:
                vals.append(s[-1][1])
        if len(vals) < len(series):
            continue
        m = sum(vals) / len(vals)
        sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0
        out.append((step, m, sd, len(vals)))
    return out


def draw_curve(ax, st, curve, label, markers=True):
    colour, marker, line = st["style"]
    xs = [c[0] for c in curve]
    ms = [c[1] for c in curve]
    ax.plot(xs, ms, color=colour, marker=marker if markers else None, linestyle=line,
            markersize=5, linewidth=1.6, markevery=max(1, len(xs) // 12), label=label)
    if st["seeds"] > 1:
        ax.fill_between(xs, [c[1] - c[2] for c in curve], [c[1] + c[2] for c in curve],
                        color=colour, alpha=0.18, linewidth=0)


def plot_loss(settings, prefix, title):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for st in settings:
        curve = mean_curve(st["runs"], lambda run: [(num(r["step"]), num(r["loss"]))
                                                     for r in run["metrics"]])
        if curve:
            draw_curve(ax, st, curve, setting_label(st, settings), markers=False)
    ax.set_xlabel("Training steps")
    ax.set_ylabel("Training loss")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(steps_formatter())
    ax.set_title(f"Training loss: {title}{band_note(settings)}")
    ax.grid(True, which="both", alpha=0.35)
    ax.legend(frameon=True, fontsize=9)
    save(fig, prefix, "loss")


def band_note(settings):
    return " (lines: mean over seeds, band: ±1 sd)" if any(s["seeds"] > 1 for s in settings) \
        else ""


def eval_lengths(runs):
    return sorted({int(num(r["seq_len"])) for run in runs for r in run["eval"]})


def acc_points(length):
    return lambda run: [(num(r["step"]), 100 * num(r["accuracy"])) for r in run["eval"]
                        if int(num(r["seq_len"])) == length]


def plot_acc_steps(settings, prefix, title):
    runs = [run for st in settings for run in st["runs"]]
    lengths = eval_lengths(runs)
    cols = min(len(lengths), 4)
    rows_n = math.ceil(len(lengths) / cols)
    # One panel (a sweep evaluated at one length): larger, with the legend beside it, so long
    # setting labels do not shrink the axes to a stamp.
    size = (6.4, 4.4) if cols == 1 else (4.2 * cols, 3.6 * rows_n)
    fig, axes = plt.subplots(rows_n, cols, figsize=size, squeeze=False, sharey=True)
    for i, length in enumerate(lengths):
        ax = axes[i // cols][i % cols]
        for st in settings:
            curve = mean_curve(st["runs"], acc_points(length))
            if curve:
                draw_curve(ax, st, curve, setting_label(st, settings))
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
    fig.suptitle(f"Eval accuracy vs training steps: {title}{band_note(settings)}")
    fig.tight_layout()
    # Below the panels (beside a single one), clear of their axis labels; bbox_inches="tight"
    # grows the figure to fit.
    if cols == 1:
        fig.legend(handles, labels, loc="center left", ncol=1, frameon=True,
                   bbox_to_anchor=(1.0, 0.5))
    else:
        fig.legend(handles, labels, loc="upper center", ncol=min(max(len(labels), 1), 3),
                   frameon=True, bbox_to_anchor=(0.5, 0.0))
    save(fig, prefix, "acc_steps")


def run_score(run, length, final):
    pts = sorted(acc_points(length)(run))
    if not pts:
        return math.nan
    return pts[-1][1] if final else max(a for _, a in pts)


def by_training_length(settings):
    """True when the settings differ in train.seq_len (Figure 4's top row): accuracy is then
    plotted against the training length, each run scored at its own length."""
    return len({st["seq_len"] for st in settings}) > 1


def scored_length(run, train_len):
    lens = {int(num(r["seq_len"])) for r in run["eval"]}
    if train_len in lens:
        return train_len
    return next(iter(lens)) if len(lens) == 1 else None


def best_per_mixer(settings, final):
    """[(label, group, [(length, mean, sd, n, lr)])]: per mixer and length the setting with the
    best MEAN over its seeds (the best learning rate), each seed scored by its peak eval (or its
    last with final=True). The mean is what is drawn, with its sd: never one seed's best."""
    per_len = by_training_length(settings)
    table = {}
    for st in settings:
        if per_len:
            lengths = [st["seq_len"]]
        else:
            lengths = eval_lengths(st["runs"])
        for length in lengths:
            scores = []
            for run in st["runs"]:
                at = scored_length(run, length) if per_len else length
                if at is not None:
                    scores.append(run_score(run, at, final))
            scores = [x for x in scores if not math.isnan(x)]
            if not scores:
                continue
            m = sum(scores) / len(scores)
            sd = math.sqrt(sum((x - m) ** 2 for x in scores) / (len(scores) - 1)) \
                if len(scores) > 1 else 0.0
            cur = table.setdefault(st["label"], {"group": st["group"], "points": {}})
            prev = cur["points"].get(length)
            if prev is None or m > prev[0]:
                cur["points"][length] = (m, sd, len(scores), st["lr"])
    out = []
    for label, entry in table.items():
        pts = [(length,) + entry["points"][length] for length in sorted(entry["points"])]
        out.append((label, entry["group"], pts))
    out.sort(key=lambda e: (MIXER_ORDER.index(e[1]) if e[1] in MIXER_ORDER else 99, e[0]))
    return out


def draw_acc_len(ax, settings, final, legend=True):
    table = best_per_mixer(settings, final)
    lengths = sorted({p[0] for _, _, pts in table for p in pts})
    max_n = max([p[3] for _, _, pts in table for p in pts] or [1])
    for label, group, pts in table:
        colour, marker, line = style(group)
        ns = sorted({p[3] for p in pts})
        n_text = "/".join(str(n) for n in ns)
        text = f"{label} (mean of {n_text} seeds)" if max_n > 1 else label
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts],
                    yerr=[p[2] for p in pts] if max_n > 1 else None, color=colour,
                    marker=marker, linestyle=line, markersize=7, linewidth=1.8, capsize=4,
                    label=text)
    if lengths:
        ax.set_xscale("log", base=2)
        ax.set_xticks(lengths)
        ax.set_xticklabels([str(n) for n in lengths])
    ax.minorticks_off()
    ax.set_ylim(-3, 103)
    ax.set_xlabel("Training length" if by_training_length(settings) else "Sequence length")
    ax.set_ylabel("Accuracy (%)")
    ax.grid(True, alpha=0.35)
    if legend:
        ax.legend(frameon=True, fontsize=8)
    return table


def write_table(table, path, final):
    """The numbers behind accuracy-vs-length, so no one reads them off the figure."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mixer", "length", "best_lr", "accuracy_mean", "accuracy_sd", "seeds",
                    "score"])
        for label, _, pts in table:
            for length, m, sd, n, lr in pts:
                w.writerow([label, length, lr, f"{m:.4f}", f"{sd:.4f}", n,
                            "last eval" if final else "peak eval"])
    print(f"wrote {path}")


def plot_acc_len(settings, prefix, title, final):
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    table = draw_acc_len(ax, settings, final)
    kind = "final" if final else "peak"
    seeds = max(st["seeds"] for st in settings)
    note = f", {seeds_text(seeds)} ± 1 sd, best lr by the mean" if seeds > 1 else ", best lr"
    ax.set_title(f"{kind.capitalize()} eval accuracy vs length: {title}{note}", fontsize=10)
    save(fig, prefix, "acc_len")
    write_table(table, f"{prefix}_acc_len.csv", final)


def plot_figure4(settings, prefix, final, steps_len=1024):
    """The tech report's Figure 4: per task (column) the best accuracy against training length
    (top) and accuracy against steps at length 1024 (bottom), the lr per mixer chosen by the mean
    over seeds of the peak accuracy at 1024."""
    tasks = sorted({st["task"] for st in settings if st["task"]})
    order = {"palindrome": 0, "mqar": 1, "stack": 2}
    tasks.sort(key=lambda t: order.get(t, 9))
    fig, axes = plt.subplots(2, len(tasks), figsize=(5 * len(tasks), 7.5), squeeze=False)
    names = {"palindrome": "Palindrome", "mqar": "MQAR", "stack": "Stack"}
    for col, task in enumerate(tasks):
        mine = [st for st in settings if st["task"] == task]
        top, bottom = axes[0][col], axes[1][col]
        draw_acc_len(top, mine, final, legend=col == 0)
        top.set_title(names.get(task, task))
        at = [st for st in mine if st["seq_len"] == steps_len]
        best = {}
        for st in at:
            scores = [run_score(r, steps_len, final) for r in st["runs"]]
            scores = [x for x in scores if not math.isnan(x)]
            if scores:
                m = sum(scores) / len(scores)
                if st["label"] not in best or m > best[st["label"]][0]:
                    best[st["label"]] = (m, st)
        for label, (_, st) in sorted(best.items(), key=lambda e: (
                MIXER_ORDER.index(e[1][1]["group"]) if e[1][1]["group"] in MIXER_ORDER
                else 99)):
            curve = mean_curve(st["runs"], acc_points(steps_len))
            if curve:
                draw_curve(bottom, st, curve, f"{label} (lr {st['lr']}, {seeds_text(st['seeds'])})")
        bottom.set_xlabel("Training steps")
        bottom.xaxis.set_major_formatter(steps_formatter())
        bottom.set_ylim(-3, 103)
        bottom.grid(True, alpha=0.35)
        bottom.set_title(f"{names.get(task, task)}, length {steps_len}")
        if col == 0:
            bottom.set_ylabel("Accuracy (%)")
        if bottom.lines:
            bottom.legend(frameon=True, fontsize=7)
    seeds = max(st["seeds"] for st in settings)
    # The step budget goes in the title: a figure of 2,000-step runs must not pass for the
    # paper's 20,000.
    steps = sorted({r["steps"] for st in settings for r in st["runs"] if r["steps"]})
    budget = f"at most {steps[-1]:,} steps; " if steps else ""
    if len(tasks) < 3:  # one line would be wider than one or two columns
        budget = budget.rstrip("; ") + "\n" if budget else ""
    fig.suptitle("Figure 4 layout: " + budget + (f"{seeds_text(seeds)}, error bars and bands "
                 "±1 sd; " if seeds > 1 else "one seed; ") + "best lr per point by the mean over "
                 "seeds", fontsize=10)
    fig.tight_layout()
    save(fig, prefix, "figure4")


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
    settings = make_settings(runs)
    assign_styles(settings)
    tasks = sorted({run["task"] for run in runs if run["task"]})
    title = ", ".join(tasks) or "runs"
    out_dir = os.path.dirname(args.out_prefix)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    plot_loss(settings, args.out_prefix, title)
    if any(run["eval"] for run in runs):
        plot_acc_steps(settings, args.out_prefix, title)
        plot_acc_len(settings, args.out_prefix, title, args.final)
        if by_training_length(settings):
            plot_figure4(settings, args.out_prefix, args.final)
    else:
        print("plot.py: no eval.csv rows in any run; accuracy plots skipped", file=sys.stderr)


if __name__ == "__main__":
    main()
