"""Curves against training steps: training loss (one panel per training length when a sweep
has several), and eval accuracy with one panel per eval length."""
import math

from .figures import (band_note, draw_curve, plt, save, setting_label, shared_legend,
                      steps_formatter)
from .runs import acc_points, eval_lengths, mean_curve, num


PANEL_COLS = 4  # panels per row; the first of each row carries the y label


def panel_grid(n):
    cols = min(n, PANEL_COLS)
    rows_n = math.ceil(n / cols)
    # One panel: larger, with the legend beside it, so long setting labels do not shrink the
    # axes to a stamp.
    size = (6.4, 4.4) if cols == 1 else (4.2 * cols, 3.6 * rows_n)
    fig, axes = plt.subplots(rows_n, cols, figsize=size, squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def loss_curve(st):
    return mean_curve(st["runs"], lambda run: [(num(r["step"]), num(r["loss"]))
                                               for r in run["metrics"]])


def plot_loss(settings, prefix, title):
    lengths = sorted({st["seq_len"] for st in settings if st["seq_len"] is not None})
    # A sweep over training lengths: one panel per length (forty lines on one axis, each with
    # its band, cannot be read), the length in the panel's title instead of every label.
    panels = [(f"Training length {n}", [st for st in settings if st["seq_len"] == n])
              for n in lengths] if len(lengths) > 1 else [("", settings)]
    fig, axes = panel_grid(len(panels))
    for i, (ax, (name, members)) in enumerate(zip(axes, panels)):
        for st in members:
            curve = loss_curve(st)
            if curve:
                draw_curve(ax, st, curve, setting_label(st, settings, len(panels) > 1),
                           markers=False)
        ax.set_xlabel("Training steps")
        if i % PANEL_COLS == 0:
            ax.set_ylabel("Training loss")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(steps_formatter())
        ax.grid(True, which="both", alpha=0.35)
        if name:
            ax.set_title(name)
    fig.suptitle(f"Training loss: {title}{band_note(settings)}")
    fig.tight_layout()
    shared_legend(fig, axes, len(panels) == 1)
    save(fig, prefix, "loss")


def plot_acc_steps(settings, prefix, title):
    runs = [run for st in settings for run in st["runs"]]
    lengths = eval_lengths(runs)
    curves = [[(st, mean_curve(st["runs"], acc_points(length))) for st in settings]
              for length in lengths]
    # Each run scored at its own training length only (Figure 4's sweeps): the panel names the
    # length, so the labels need not, and one legend serves every panel.
    drop_len = all(len({st["seq_len"] for st, c in panel if c}) <= 1 for panel in curves)
    fig, axes = panel_grid(len(lengths))
    for i, (ax, length, panel) in enumerate(zip(axes, lengths, curves)):
        for st, curve in panel:
            if curve:
                draw_curve(ax, st, curve, setting_label(st, settings, drop_len))
        ax.set_title(f"Eval length {length}")
        ax.set_xlabel("Training steps")
        ax.xaxis.set_major_formatter(steps_formatter())
        ax.set_ylim(-3, 103)
        ax.grid(True, alpha=0.35)
        if i % PANEL_COLS == 0:
            ax.set_ylabel("Accuracy (%)")
    fig.suptitle(f"Eval accuracy vs training steps: {title}{band_note(settings)}")
    fig.tight_layout()
    shared_legend(fig, axes, len(lengths) == 1)
    save(fig, prefix, "acc_steps")
