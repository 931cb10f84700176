#!/usr/bin/env python3
"""PyTorch side of the CommVQ decode-attention benchmark (issue 7): one decode step of one layer at Llama-3.1-8B
attention dimensions (B 1, H_q 32, H_kv 8, D_h 128), torch.nn.functional.scaled_dot_product_attention over a bf16
K/V cache of the same context length as ours, with GQA handled by SDPA itself (enable_gqa=True; the expanded-KV
form HF uses, repeat_kv + SDPA, is timed too and is slower). Same timing method as src/bench/commvq-attention-bench.ts:
CUDA events around a CUDA graph of 20 back-to-back calls, after warm-up; the median of the replays divided by 20.

Given our JSON (--ours), prints one JSON object with both sides and the ratio ours / PyTorch per context, and a
markdown table on stderr. Given the peer caches' JSON (--peers, from src/bench/peer-attention-bench.ts: int4, int2,
fp8, KIVI-2, KIVI-1 with dequantization fused into the decode kernel), the same for every peer cache (issue 18).

    node dist/bench/commvq-attention-bench.js > ours.json && python3 scripts/bench/torch_sdpa_decode.py --ours ours.json
    node dist/bench/peer-attention-bench.js > peers.json && python3 scripts/bench/torch_sdpa_decode.py --peers peers.json
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--contexts", type=str, default="32768,131072")
p.add_argument("--reps", type=int, default=20)
p.add_argument("--ours", type=str, default=None)
p.add_argument("--peers", type=str, default=None)
a = p.parse_args()
dev = "cuda"
HQ, HKV, D, BATCH = 32, 8, 128, 20
torch.manual_seed(0)


def time_graph(fn):
    fn()
    torch.cuda.synchronize()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm-up on a side stream, as graph capture wants
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(BATCH):
            fn()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ms = []
    for i in range(a.reps + 2):
        start.record()
        g.replay()
        stop.record()
        stop.synchronize()
        if i >= 2:
            ms.append(start.elapsed_time(stop) / BATCH)
    ms.sort()
    return ms[len(ms) // 2]


rows = []
for T in [int(x) for x in a.contexts.split(",")]:
    q = torch.randn(1, HQ, 1, D, device=dev, dtype=torch.bfloat16)
    k = torch.randn(1, HKV, T, D, device=dev, dtype=torch.bfloat16)
    v = torch.randn(1, HKV, T, D, device=dev, dtype=torch.bfloat16)
    out = torch.empty(1, HQ, 1, D, device=dev, dtype=torch.bfloat16)

    def gqa():
        out.copy_(F.scaled_dot_product_attention(q, k, v, enable_gqa=True))

    sdpa_ms = time_graph(gqa)
    del k, v
    torch.cuda.empty_cache()
    k4 = torch.randn(1, HQ, T, D, device=dev, dtype=torch.bfloat16)  # repeat_kv'd cache, as HF's sdpa path has it
    v4 = torch.randn(1, HQ, T, D, device=dev, dtype=torch.bfloat16)

    def expanded():
        out.copy_(F.scaled_dot_product_attention(q, k4, v4))

    expanded_ms = time_graph(expanded)
    del k4, v4
    torch.cuda.empty_cache()
    rows.append({"context": T, "sdpaGqaMs": sdpa_ms, "sdpaExpandedMs": expanded_ms})

res = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "rows": rows}
if a.ours:
    ours = json.load(open(a.ours))
    by = {r["context"]: r for r in ours["results"]}
    res["ours"] = ours
    print("| context | CommVQ-1 (ours) | our dense bf16 decode | PyTorch SDPA (GQA) | ratio ours / SDPA |", file=sys.stderr)
    print("|---|---|---|---|---|", file=sys.stderr)
    for r in rows:
        o = by.get(r["context"])
        if o:
            r["oursMs"] = o["commvqMs"]
            r["ratio"] = o["commvqMs"] / r["sdpaGqaMs"]
            print(f"| {r['context']} | {o['commvqMs'] * 1e3:.1f} µs | {o['denseOursMs'] * 1e3:.1f} µs | "
                  f"{r['sdpaGqaMs'] * 1e3:.1f} µs | {r['ratio']:.2f} |", file=sys.stderr)
if a.peers:
    peers = json.load(open(a.peers))
    by = {r["context"]: r for r in peers["results"]}
    res["peers"] = peers
    labels = [label for r in peers["results"] for label in r["caches"]]
    labels = list(dict.fromkeys(labels))
    print("| context | PyTorch SDPA (GQA, bf16) | our dense bf16 | " + " | ".join(labels) + " |", file=sys.stderr)
    print("|---" * (3 + len(labels)) + "|", file=sys.stderr)
    for r in rows:
        o = by.get(r["context"])
        if not o:
            continue
        r["peers"] = {label: {"ms": c["ms"], "ratioToSdpa": c["ms"] / r["sdpaGqaMs"]} for label, c in o["caches"].items()}
        cells = [f"{o['caches'][l]['ms'] * 1e3:.1f} µs ({o['caches'][l]['ms'] / r['sdpaGqaMs']:.2f}×)" if l in o["caches"] else "—" for l in labels]
        print(f"| {r['context']} | {r['sdpaGqaMs'] * 1e3:.1f} µs | {o['denseOursMs'] * 1e3:.1f} µs | " + " | ".join(cells) + " |", file=sys.stderr)
print(json.dumps(res, indent=1))
