"""Run directories read into dicts (config.yaml, summary.json, metrics.csv, eval.csv) and grouped
into settings: the runs that differ only in train.seed, whose mean over seeds is what is drawn."""
import csv
import json
import math
import os
import sys

from .mixers import mixer_of


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


def eval_lengths(runs):
    return sorted({int(num(r["seq_len"])) for run in runs for r in run["eval"]})


def acc_points(length):
    return lambda run: [(num(r["step"]), 100 * num(r["accuracy"])) for r in run["eval"]
                        if int(num(r["seq_len"])) == length]
