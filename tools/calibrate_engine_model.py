#!/usr/bin/env python3
"""Derives the h200 engine profile of `kimi-lab simulate --model engine` (inference/engine_model.cpp)
from its calibration rows only: the hybrid's breakdown at 4K for B = 1, 8, 64, 639 and two rows of
the MLA attend microbenchmark (notes/s14/mla_bench.log). Prints each parameter; the C++ keeps them
as constants with these rows as their sources. No other row is read."""
import csv, math, sys

CSV = sys.argv[1] if len(sys.argv) > 1 else "results/bench_infer_h200/bench_breakdown.csv"
rows = list(csv.reader(l for l in open(CSV) if not l.startswith("#")))[1:]
bd, tpot = {}, {}
for r in rows:
    if r[0] == "hybrid" and int(r[1]) == 4096:
        bd.setdefault(int(r[2]), {})[r[3]] = (float(r[4]), float(r[5]))
        tpot[int(r[2])] = float(r[7])
assert sorted(bd) == [1, 8, 64, 639], sorted(bd)

# The 48B hybrid: 27 layers, 20 KDA + 7 MLA, 26 MoE + 1 dense, top-8 of 256 experts.
nK, nM, nL, nMoE, k = 20, 7, 27, 26, 8
expert_bytes = 3 * 2304 * 1024 * 2
gemm = {"kda.proj": (nK, 2), "kda.o_proj": (nK, 1), "mla.proj": (nM, 1), "mla.o_proj": (nM, 1),
        "ffn.shared+dense": (nL, 2), "lm_head": (1, 1)}  # layers, GEMV kernels per layer
P = {}
t = lambda b, p: bd[b][p][0]
by = lambda b, p: bd[b][p][1]
# GEMV (b <= 8): the head (one kernel a step) sets the bandwidth; the rest the latency per kernel.
P["gemv_bw"] = by(1, "lm_head") / t(1, "lm_head") * 1e3  # bytes/s
kern = sum(n * kk for p, (n, kk) in gemm.items() if p != "lm_head")
rest = sum(t(1, p) - by(1, p) / P["gemv_bw"] * 1e3 for p in gemm if p != "lm_head")
P["gemv_kernel_s"] = rest / kern * 1e-3
# Each extra sequence of a GEMV batch costs alpha of its B=1 time (summed over the GEMM parts).
s1 = sum(t(1, p) for p in gemm); s8 = sum(t(8, p) for p in gemm)
P["gemv_alpha"] = (s8 / s1 - 1) / 7
# Tensor-core path (b > 8): the head at B=64 sets the bandwidth. Each part's rate and latency per
# layer from B=64 and B=639: compute-bound at both when that solves with the B=64 compute above
# its memory time, else memory-bound at B=64 (latency) and compute-bound at B=639 (rate).
# FLOPs = 2 b params = b * weight bytes (the B=1 bytes; the head's B=1 logits are 0.1% of them).
P["tc_bw"] = by(64, "lm_head") / t(64, "lm_head") * 1e3
for p, (n, kk) in gemm.items():
    w = by(1, p)
    rate = 575 * w / ((t(639, p) - t(64, p)) * 1e-3)
    lat = (t(64, p) * 1e-3 - 64 * w / rate) / n
    if lat < 0 or 64 * w / rate < by(64, p) / P["tc_bw"]:
        lat = max(0.0, t(64, p) * 1e-3 - by(64, p) / P["tc_bw"]) / n
        rate = 639 * w / (t(639, p) * 1e-3 - n * lat)
    P[f"tc_layer_s[{p}]"] = lat
    P[f"tc_rate[{p}]"] = rate
# KDA update: latency per layer (B=1), state bandwidth (B=639).
P["kda_update_layer_s"] = t(1, "kda.update") / nK * 1e-3
P["kda_update_bw"] = by(639, "kda.update") / t(639, "kda.update") * 1e3
# MLA attend kernel (microbenchmark): splits * c + cache bytes / bw through B=1 1M and B=64 32K.
a1, n1, b1 = 0.943e-3, 264, 1208.0e6   # B=1 1M: 264 splits, 1208 MB
a2, n2, b2 = 1.402e-3, 5, 2415.9e6     # B=64 32K: 5 splits
x = (a2 * n1 - a1 * n2) / (b2 * n1 - b1 * n2)  # s per byte
P["attend_bw"] = 1 / x
P["attend_split_s"] = (a1 - b1 * x) / n1
# The rest of the attend part per layer (append, kv_b absorb and up-projection): a + s b through
# the breakdown at B=64 and B=639 less the kernel above.
def kernel_s(b, n):
    splits = min(math.ceil(264 / b), math.ceil((n + 1) / 32))
    return splits * P["attend_split_s"] + b * (n + 1) * 1152 / P["attend_bw"]
o64 = t(64, "mla.attend") * 1e-3 / nM - kernel_s(64, 4096)
o639 = t(639, "mla.attend") * 1e-3 / nM - kernel_s(639, 4096)
P["attend_seq_s"] = (o639 - o64) / 575
P["attend_layer_s"] = o64 - 64 * P["attend_seq_s"]
# Up to B=8 (GEMV absorb) the rest grows from ~0 at B=1 by a step per extra sequence (B=8).
o1 = t(1, "mla.attend") * 1e-3 / nM - kernel_s(1, 4096)
o8 = t(8, "mla.attend") * 1e-3 / nM - kernel_s(8, 4096)
P["attend_rest_b1_s"] = o1
P["attend_step_s"] = (o8 - o1) / 7
# Routing per MoE layer: B=1, the step to B=8, per sequence at B=639.
P["route_s"] = t(1, "moe.route") / nMoE * 1e-3
P["route_step_s"] = (t(8, "moe.route") - t(1, "moe.route")) / 7 / nMoE * 1e-3
P["route_seq_s"] = t(639, "moe.route") / 639 / nMoE * 1e-3
# Routed experts: GEMV bandwidth and latency per layer from B=1 and B=8; tensor-core bandwidth from
# B=64; rate from B=639 (FLOPs = b * k * layers * expert bytes).
e1, e8 = by(1, "moe.experts"), by(8, "moe.experts")
P["experts_gemv_bw"] = (e8 - e1) / ((t(8, "moe.experts") - t(1, "moe.experts")) * 1e-3)
P["experts_layer_s"] = (t(1, "moe.experts") * 1e-3 - e1 / P["experts_gemv_bw"]) / nMoE
P["experts_tc_bw"] = by(64, "moe.experts") / (t(64, "moe.experts") * 1e-3 - nMoE * P["experts_layer_s"])
P["experts_tc_rate"] = 639 * k * nMoE * expert_bytes / (t(639, "moe.experts") * 1e-3 - nMoE * P["experts_layer_s"])
P["norm_s"] = t(1, "norms") / (2 * nL + 1) * 1e-3
P["embed_s"] = t(1, "embed") * 1e-3
P["graph_gain_layer_s"] = (sum(v[0] for v in bd[1].values()) - tpot[1]) / nL * 1e-3
for key, v in P.items():
    print(f"{key:28s} {v:.6g}")
