"""tools/plot_runs: one style per mixer and lr in every panel of a sweep over training lengths
(the legend is shared, so a style must mean one setting), distinct styles and labels for runs
whose configs share a name, labels without the length where the panel names it, and runs of
several tasks scored per task (one task's accuracy is never another's best)."""
import csv
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))

from plot_runs.curves import plot_loss  # noqa: E402
from plot_runs.figures import assign_styles, setting_label  # noqa: E402


def setting(name, group="kda", label="KDA", lr=1e-3, seq_len=256, run_dir=None):
    run = {"dir": run_dir or f"/runs/sweep/{name},seed=0", "stopped_early": False,
           "metrics": [{"step": "10", "loss": "2.0"}, {"step": "20", "loss": "1.0"}]}
    return {"key": name + (run_dir or ""), "runs": [run], "group": group, "label": label,
            "name": name, "lr": lr, "task": "mqar", "seq_len": seq_len, "seeds": 1}


def sweep():
    return [setting(f"mixer={m},seq_len={t},lr={lr}", m, m.upper(), lr, t)
            for m in ("kda", "gdn") for t in (256, 1024) for lr in (0.0005, 0.001)]


class PlotStyles(unittest.TestCase):
    def test_one_style_per_mixer_and_lr_across_lengths(self):
        settings = sweep()
        assign_styles(settings)
        style = {}
        for st in settings:
            style.setdefault((st["group"], st["lr"]), set()).add(st["style"])
        self.assertTrue(all(len(s) == 1 for s in style.values()), style)
        self.assertEqual(len({next(iter(s)) for s in style.values()}), 4)

    def test_labels_drop_the_length_only_when_asked(self):
        settings = sweep()
        st = settings[0]
        self.assertEqual(setting_label(st, settings, drop_len=True), "KDA (lr=0.0005)")
        self.assertEqual(setting_label(st, settings), "KDA (seq_len=256,lr=0.0005)")

    def test_runs_sharing_a_config_name_stay_apart(self):
        settings = [setting("quickstart", run_dir="/tmp/a_mlp"),
                    setting("quickstart", run_dir="/tmp/a_l4")]
        assign_styles(settings)
        self.assertNotEqual(settings[0]["style"], settings[1]["style"])
        labels = {setting_label(st, settings) for st in settings}
        self.assertEqual(labels, {"KDA (a_mlp, lr 0.001)", "KDA (a_l4, lr 0.001)"})

    def test_loss_plot_of_a_length_sweep_is_written(self):
        settings = sweep()
        assign_styles(settings)
        with tempfile.TemporaryDirectory() as d:
            plot_loss(settings, os.path.join(d, "s"), "mqar")
            self.assertGreater(os.path.getsize(os.path.join(d, "s_loss.png")), 1000)


def write_run(root, task, seq_len, accuracy):
    d = os.path.join(root, f"task={task},seq_len={seq_len},seed=0")
    os.makedirs(d)
    with open(os.path.join(d, "config.yaml"), "w") as f:
        f.write(f"name: task={task},seq_len={seq_len},seed=0\ntask:\n  name: {task}\n"
                f"model:\n  mixer: kda\ntrain:\n  lr: 0.001\n  seq_len: {seq_len}\n  seed: 0\n")
    with open(os.path.join(d, "metrics.csv"), "w") as f:
        f.write("step,loss\n10,2.0\n20,1.0\n")
    with open(os.path.join(d, "eval.csv"), "w") as f:
        f.write(f"step,task,seq_len,accuracy\n20,{task},{seq_len},{accuracy}\n")
    return d


class SeveralTasks(unittest.TestCase):
    def test_each_task_scored_apart_and_one_figure4(self):
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools",
                              "plot.py")
        with tempfile.TemporaryDirectory() as d:
            dirs = [write_run(d, "mqar", 256, 0.10), write_run(d, "mqar", 512, 0.20),
                    write_run(d, "stack", 256, 0.90), write_run(d, "stack", 512, 0.80)]
            subprocess.run([sys.executable, script, os.path.join(d, "p")] + dirs, check=True,
                           stdout=subprocess.DEVNULL)
            for task, want in (("mqar", ["10.0000", "20.0000"]),
                               ("stack", ["90.0000", "80.0000"])):
                with open(os.path.join(d, f"p_{task}_acc_len.csv")) as f:
                    got = [row["accuracy_mean"] for row in csv.DictReader(f)]
                self.assertEqual(got, want, task)
            self.assertTrue(os.path.exists(os.path.join(d, "p_figure4.png")))
            self.assertFalse(os.path.exists(os.path.join(d, "p_acc_len.csv")))


if __name__ == "__main__":
    unittest.main()
