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
.{png,svg}, OUT_PREFIX_acc_len.csv with the plotted numbers, and OUT_PREFIX_figure4.{png,svg};
runs of several tasks get OUT_PREFIX_<task>_* each, and one Figure 4 with a column per task).
Needs python3 with matplotlib (Debian: /usr/bin/python3 + python3-matplotlib). The work is done
by the modules of tools/plot_runs/, which must sit beside this script.
"""
import argparse
import os
import sys

from plot_runs.accuracy_length import by_training_length, plot_acc_len
from plot_runs.curves import plot_acc_steps, plot_loss
from plot_runs.figure4 import plot_figure4
from plot_runs.figures import assign_styles
from plot_runs.runs import load_run, make_settings


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
    out_dir = os.path.dirname(args.out_prefix)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    has_eval = any(run["eval"] for run in runs)
    # Runs of several tasks: each task's curves and best-per-length table apart
    # (OUT_PREFIX_<task>_*; one task's accuracy is no score of another's), Figure 4 together.
    groups = [(args.out_prefix, tasks, settings)] if len(tasks) <= 1 else [
        (f"{args.out_prefix}_{task}", [task], [st for st in settings if st["task"] == task])
        for task in tasks]
    for prefix, names, mine in groups:
        title = ", ".join(names) or "runs"
        plot_loss(mine, prefix, title)
        if has_eval and any(run["eval"] for st in mine for run in st["runs"]):
            plot_acc_steps(mine, prefix, title)
            plot_acc_len(mine, prefix, title, args.final)
    if not has_eval:
        print("plot.py: no eval.csv rows in any run; accuracy plots skipped", file=sys.stderr)
    elif by_training_length(settings):
        plot_figure4(settings, args.out_prefix, args.final)


if __name__ == "__main__":
    main()
