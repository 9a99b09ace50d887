"""Curves against training steps: training loss, and eval accuracy with one panel per eval
length."""
import math

from .figures import band_note, draw_curve, plt, save, setting_label, steps_formatter
from .runs import acc_points, eval_lengths, mean_curve, num


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
