"""What every figure of plot.py shares: matplotlib (headless), line styles per setting, labels,
a mean-over-seeds curve drawn with its band, and saving as PNG and SVG."""
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

from .mixers import MIXER_ORDER, style


def lighten(colour, amount):
    rgb = matplotlib.colors.to_rgb(colour)
    return tuple(c + (1 - c) * amount for c in rgb)


def name_parts(st, drop):
    """What names the setting, as key=value parts without those starting with drop: a sweep
    point's name (its grid values), else the run directory's own name (two runs in different
    folders may share a config name)."""
    parts = [p for p in st["name"].split(",") if not p.startswith(drop)]
    if all("=" in p for p in st["name"].split(",")):
        return parts
    return [os.path.basename(os.path.normpath(st["runs"][0]["dir"]))]


def style_key(st):
    """What a line's style stands for: the setting without its seed and training length, so one
    mixer and lr keeps one style in every panel of a sweep over lengths (and in its legend)."""
    return (st["group"], st["label"], ",".join(name_parts(st, ("seed=", "seq_len="))), st["lr"])


def assign_styles(settings):
    """Sorts settings by mixer then name; the 2nd, 3rd, ... setting of one mixer (an lr sweep)
    keeps the mixer's hue, lighter and with another dash pattern, so every line stays tellable."""
    settings.sort(key=lambda r: (MIXER_ORDER.index(r["group"]) if r["group"] in MIXER_ORDER
                                 else len(MIXER_ORDER), r["label"], r["name"]))
    dashes = ["-", "--", ":", "-."]
    keys = list(dict.fromkeys(style_key(st) for st in settings))
    # One mixer family only (Table 1's hybrid rows, an ablation): shades of one hue cannot tell
    # nine lines apart, so each setting gets its own colour of a qualitative palette.
    if len({st["group"] for st in settings}) == 1 and len(keys) > 2:
        palette = matplotlib.colormaps["tab10"].colors
        for st in settings:
            i = keys.index(style_key(st))
            _, marker, _ = style(st["group"])
            st["style"] = (palette[i % 10], marker, dashes[(i // 10) % len(dashes)])
        return
    rank, per_label = {}, {}  # style key -> its place among its mixer's keys
    for key in keys:
        rank[key] = per_label.get(key[1], 0)
        per_label[key[1]] = rank[key] + 1
    for st in settings:
        colour, marker, line = style(st["group"])
        i = rank[style_key(st)]
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


def setting_label(st, settings, drop_len=False):
    """The mixer name, plus what tells settings of one mixer apart, plus the seed count.
    drop_len: the panel or axis already says the training length, so the label does not."""
    drop = ("seed=", "mixer=") + (("seq_len=",) if drop_len else ())
    same = {",".join(name_parts(s, drop)) + str(s["lr"]) for s in settings
            if s["label"] == st["label"]}
    base = st["label"]
    if len(same) > 1:
        name = ",".join(name_parts(st, drop))
        has_lr = st["lr"] is not None and "lr=" not in name
        extra = ", ".join(x for x in (name, f"lr {st['lr']}" if has_lr else "") if x)
        base += f" ({extra})" if extra else ""
    return base + (f" [{seeds_text(st['seeds'])}]" if st["seeds"] > 1 else "")


def shared_legend(fig, axes, one_panel):
    """One legend for every panel, each label once (the first panel may lack a setting):
    beside a single panel, below several."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if one_panel:
        fig.legend(handles, labels, loc="center left", ncol=1, frameon=True,
                   bbox_to_anchor=(1.0, 0.5), fontsize=9)
    else:
        fig.legend(handles, labels, loc="upper center", ncol=min(max(len(labels), 1), 3),
                   frameon=True, bbox_to_anchor=(0.5, 0.0), fontsize=9)


def draw_curve(ax, st, curve, label, markers=True):
    colour, marker, line = st["style"]
    xs = [c[0] for c in curve]
    ms = [c[1] for c in curve]
    ax.plot(xs, ms, color=colour, marker=marker if markers else None, linestyle=line,
            markersize=5, linewidth=1.6, markevery=max(1, len(xs) // 12), label=label)
    if st["seeds"] > 1:
        ax.fill_between(xs, [c[1] - c[2] for c in curve], [c[1] + c[2] for c in curve],
                        color=colour, alpha=0.18, linewidth=0)


def band_note(settings):
    return " (lines: mean over seeds, band: ±1 sd)" if any(s["seeds"] > 1 for s in settings) \
        else ""
