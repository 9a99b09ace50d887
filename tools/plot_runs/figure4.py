"""The tech report's Figure 4 laid out from a sweep that varies the training length."""
import math

from .accuracy_length import draw_acc_len, run_score
from .figures import draw_curve, plt, save, seeds_text, steps_formatter
from .mixers import MIXER_ORDER
from .runs import acc_points, mean_curve


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
