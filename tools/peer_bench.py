#!/usr/bin/env python3
"""kimi-lab's mixer ops beside flash-linear-attention and PyTorch SDPA, timed in ONE run.

Runs `kimi-lab bench --device cuda --json` at the shapes you give, then times the peers at the
same shapes, dtypes and gradient set-up in this process (CUDA events, median after warm-up),
and prints one joint table: speed ratio = peer time / kimi-lab time (above 1: kimi-lab is
faster). No figure is typed in anywhere: a ratio always compares two timings of this run.

  python3 tools/peer_bench.py --kimi-lab build-cuda/kimi-lab --seq-lens 8192
  python3 tools/peer_bench.py --join results/bench/peers.json  # re-print a saved --out (no GPU)

Needs PyTorch and flash-linear-attention importable (`pip install flash-linear-attention`, or a
checkout on PYTHONPATH; never commit its code). Triton autotunes on first use (minutes): time
one sequence length per run on a fresh machine.

Peers (same layouts [B, T, H, D], bf16 inputs, q/k/v require grad, the same upstream grad):
  kda       fla.ops.kda.chunk_kda                 g: per-channel log decay, beta post-sigmoid
  gdn       fla.ops.gated_delta_rule.chunk_gated_delta_rule
  deltanet  fla.ops.delta_rule.chunk_delta_rule
  mamba2    fla.ops.simple_gla.chunk_simple_gla   (the SSD core: scalar decay, scale 1)
  attention torch.nn.functional.scaled_dot_product_attention(is_causal=True), [B, H, T, D]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

PEER_NAMES = {
    "kda": "FLA chunk_kda",
    "gdn": "FLA chunk_gated_delta_rule",
    "deltanet": "FLA chunk_delta_rule",
    "mamba2": "FLA chunk_simple_gla",
    "attention": "PyTorch SDPA",
}


def short_error(e):
    """A peer's refusal as one table cell: its type and first sentence (FLA's Triton refusal
    says what and why in the first, then how to upgrade), at most 160 characters."""
    text = (str(e).splitlines() or [""])[0]
    cut = text.find(". ")
    text = text[:cut + 1] if cut >= 0 else text
    text = f"{type(e).__name__}: {text}"
    return text if len(text) <= 160 else text[:157] + "..."


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kimi-lab", default="build-cuda/kimi-lab", help="the CUDA build of kimi-lab")
    p.add_argument("--mixers", default="kda,gdn,deltanet,mamba2,attention")
    p.add_argument("--seq-lens", default="8192", help="comma-separated T (one per run on a "
                   "fresh machine: Triton autotuning)")
    p.add_argument("--tokens", type=int, default=65536, help="B = tokens / T")
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--out", default="", help="write {ours, peers} JSON here (rewritten after "
                   "each peer row: a run cut short keeps what it timed)")
    p.add_argument("--markdown", default="", help="write the joint table as Markdown here")
    p.add_argument("--join", metavar="OUT_JSON",
                   help="print the joint table of a saved --out file (no GPU needed)")
    a = p.parse_args(argv)
    if a.reps < 1:
        p.error(f"--reps must be at least 1 (got {a.reps})")
    for name in a.mixers.split(","):
        if name not in PEER_NAMES:
            p.error(f"--mixers: '{name}' has no peer ({', '.join(PEER_NAMES)})")
    return a


def run_ours(a):
    """kimi-lab's figures, from its own process (the GPU is free again when it exits)."""
    if not os.access(a.kimi_lab, os.X_OK):
        sys.exit(f"peer_bench: {a.kimi_lab}: not an executable kimi-lab (give --kimi-lab)")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ours.json")
        cmd = [a.kimi_lab, "bench", "--device", "cuda", "--no-decode", "--mixers", a.mixers,
               "--seq-lens", a.seq_lens, "--tokens", str(a.tokens), "--heads", str(a.heads),
               "--head-dim", str(a.head_dim), "--reps", str(a.reps), "--json", path]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        with open(path) as f:
            return json.load(f)


def median_ms(torch, reps, fn):
    fn()  # warm-up: Triton compiles and autotunes here
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def peer_call(mixer):
    """(inputs maker, call) for one mixer; imports only what that mixer needs."""
    import torch
    import torch.nn.functional as F

    def make(B, T, H, D):
        dev, bf = "cuda", torch.bfloat16
        q = torch.randn(B, T, H, D, device=dev, dtype=bf)
        k = F.normalize(torch.randn(B, T, H, D, device=dev, dtype=torch.float32), dim=-1).to(bf)
        v = torch.randn(B, T, H, D, device=dev, dtype=bf)
        g_shape = (B, T, H, D) if mixer == "kda" else (B, T, H)
        g = (-0.1 * torch.sigmoid(torch.randn(g_shape, device=dev))).to(bf)
        beta = torch.sigmoid(torch.randn(B, T, H, device=dev)).to(bf)
        do = torch.randn(B, T, H, D, device=dev, dtype=bf)
        if mixer == "attention":  # SDPA's layout is [B, H, T, D]
            q, k, v, do = (t.transpose(1, 2).contiguous() for t in (q, k, v, do))
        return q, k, v, g, beta, do

    if mixer == "kda":
        from fla.ops.kda import chunk_kda
        call = lambda q, k, v, g, b: chunk_kda(q, k, v, g, b)[0]
    elif mixer == "gdn":
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
        call = lambda q, k, v, g, b: chunk_gated_delta_rule(q, k, v, g, b)[0]
    elif mixer == "deltanet":
        from fla.ops.delta_rule import chunk_delta_rule
        call = lambda q, k, v, g, b: chunk_delta_rule(q, k, v, b)[0]
    elif mixer == "mamba2":
        from fla.ops.simple_gla import chunk_simple_gla
        call = lambda q, k, v, g, b: chunk_simple_gla(q, k, v, g, scale=1.0)[0]
    else:
        call = lambda q, k, v, g, b: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return make, call


def time_peer(torch, mixer, B, T, H, D, reps):
    """{'fwd_ms', 'fwd_bwd_ms', 'error'}; a peer that refuses a shape is recorded, not fatal."""
    row = {"mixer": mixer, "peer": PEER_NAMES[mixer], "B": B, "T": T, "H": H, "D": D}
    try:
        make, call = peer_call(mixer)
        q, k, v, g, beta, do = make(B, T, H, D)
        with torch.no_grad():
            row["fwd_ms"] = median_ms(torch, reps, lambda: call(q, k, v, g, beta))

        def both():
            leaves = [t.detach().requires_grad_(True) for t in (q, k, v)]
            call(*leaves, g, beta).backward(do)

        try:
            row["fwd_bwd_ms"] = median_ms(torch, reps, both)
        except Exception as e:  # e.g. a backward that refuses this Triton / GPU
            row["bwd_error"] = short_error(e)
    except Exception as e:
        row["error"] = short_error(e)
    torch.cuda.empty_cache()
    return row


def run_peers(a, ours, on_row=lambda peers: None):
    """Each peer timed at our shapes; on_row(peers) after every row (and once before the first),
    so a run cut by a time limit (Triton's autotuning can take minutes) keeps what it timed."""
    import torch
    peers = {"rows": []}
    peers["torch"] = torch.__version__
    peers["gpu"] = torch.cuda.get_device_name()
    try:
        import fla
        import triton
        peers["fla"], peers["triton"] = fla.__version__, triton.__version__
    except ImportError as e:
        peers["fla"] = f"not importable: {e}"
    on_row(peers)
    for r in ours["mixers"]:
        row = time_peer(torch, r["mixer"], r["B"], r["T"], r["H"], r["D"], a.reps)
        print(f"  {row['peer']:<28} T={r['T']:<6} fwd {row.get('fwd_ms', float('nan')):.3f} ms"
              f"  fwd+bwd {row.get('fwd_bwd_ms', float('nan')):.3f} ms"
              f"  {row.get('error', row.get('bwd_error', ''))}", flush=True)
        peers["rows"].append(row)
        on_row(peers)
    return peers


def ratio(peer_ms, our_ms):
    if peer_ms is None or our_ms is None or our_ms <= 0:
        return "-"
    return f"{peer_ms / our_ms:.2f}x"


def fmt_ms(x):
    return "-" if x is None else f"{x:.3f}"


def joint_rows(ours, peers):
    """One row per (mixer, T) of ours, joined with the peer timed at the same shape."""
    index = {(p["mixer"], p["T"], p["B"], p["H"], p["D"]): p for p in peers["rows"]}
    rows = []
    for r in ours["mixers"]:
        p = index.get((r["mixer"], r["T"], r["B"], r["H"], r["D"]), {})
        note = p.get("error") or p.get("bwd_error") or ("" if p else "peer not timed")
        rows.append([r["mixer"], str(r["T"]), str(r["B"]), fmt_ms(r["fwd_ms"]),
                     fmt_ms(p.get("fwd_ms")), ratio(p.get("fwd_ms"), r["fwd_ms"]),
                     fmt_ms(r["fwd_bwd_ms"]), fmt_ms(p.get("fwd_bwd_ms")),
                     ratio(p.get("fwd_bwd_ms"), r["fwd_bwd_ms"]),
                     p.get("peer", PEER_NAMES.get(r["mixer"], "?")), note])
    return rows


HEADER = ["mixer", "T", "B", "ours fwd ms", "peer fwd ms", "fwd ratio", "ours fwd+bwd ms",
          "peer fwd+bwd ms", "fwd+bwd ratio", "peer", "note"]


def print_table(ours, peers, out=sys.stdout):
    rows = joint_rows(ours, peers)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(HEADER)]
    print("speed ratio = peer time / kimi-lab time, both timed in this run "
          "(above 1: kimi-lab is faster)", file=out)
    print("  ".join(h.ljust(w) for h, w in zip(HEADER, widths)), file=out)
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)), file=out)
    c = ours.get("ceilings", {})
    if c:
        print(f"ceilings measured by kimi-lab in this run: {c['bf16_gemm_tflops']:.0f} TFLOP/s "
              f"bf16 GEMM, {c['copy_tbs']:.2f} TB/s copy", file=out)
    print(f"peers: torch {peers.get('torch', '?')}, fla {peers.get('fla', '?')}, triton "
          f"{peers.get('triton', '?')}, GPU {peers.get('gpu', '?')}", file=out)


def markdown(ours, peers):
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in joint_rows(ours, peers)]
    lines.append("")
    lines.append(f"Peers: torch {peers.get('torch', '?')}, fla {peers.get('fla', '?')}, "
                 f"triton {peers.get('triton', '?')}, {peers.get('gpu', '?')}; "
                 f"host {platform.node()}.")
    return "\n".join(lines) + "\n"


def write_atomic(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def save(a, ours, peers):
    if a.out:
        write_atomic(a.out, json.dumps({"ours": ours, "peers": peers}, indent=1) + "\n")
    if a.markdown:
        write_atomic(a.markdown, markdown(ours, peers))


def main(argv):
    a = parse_args(argv)
    if a.join:
        try:
            with open(a.join) as f:
                saved = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            sys.exit(f"peer_bench --join: {a.join}: {e}")
        if (not isinstance(saved, dict) or "mixers" not in saved.get("ours", {})
                or "rows" not in saved.get("peers", {})):
            sys.exit(f"peer_bench --join: {a.join}: not a peer_bench --out file "
                     "(expected {\"ours\": ..., \"peers\": ...})")
        print_table(saved["ours"], saved["peers"])
        if a.markdown:
            write_atomic(a.markdown, markdown(saved["ours"], saved["peers"]))
        return 0
    ours = run_ours(a)
    peers = run_peers(a, ours, lambda p: save(a, ours, p))
    print()
    print_table(ours, peers)
    save(a, ours, peers)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
