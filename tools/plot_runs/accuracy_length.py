"""Accuracy against (training) length: per mixer and length the lr with the best mean over seeds,
drawn with error bars of one standard deviation, and the numbers behind it as CSV."""
import csv
import math

from .figures import plt, save, seeds_text
from .mixers import MIXER_ORDER, style
from .runs import acc_points, eval_lengths, num


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
