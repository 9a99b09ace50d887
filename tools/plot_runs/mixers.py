"""The mixers as plot.py draws them: a fixed colour, marker and dash per mixer, the names the tech
report uses, and the order in which legends list them."""

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


def style(group):
    return STYLES.get(group, ("#17becf", "o", "-"))
