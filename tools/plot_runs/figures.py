"""What every figure of plot.py shares: matplotlib (headless), line styles per setting, labels,
a mean-over-seeds curve drawn with its band, and saving as PNG and SVG."""
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
