#!/usr/bin/env python3
"""Summarises scripts/bench/compare-trees.sh: for every timed quantity, the median of the rounds on each side and the
ratio new / old, as a markdown table on stdout (and OUT/compare.json). Attention: µs per decode step of one layer
(whole step, and per kernel); measure-memory: prefill s, decode ms/step and the allocator's peaks (GiB)."""
import json
import statistics
import sys
from pathlib import Path

out = Path(sys.argv[1])


def load(side, kind):
    return [json.loads(p.read_text()) for p in sorted(out.glob(f"{side}-*-{kind}.json"))]


def quantities(side):
    q = {}
    for run in load(side, "attention"):
        for r in run["results"]:
            ctx = f"{r['context'] // 1024}K"
            q.setdefault(f"attention {ctx}: step µs", []).append(r["commvqMs"] * 1e3)
            for k, v in r["breakdownUs"].items():
                q.setdefault(f"attention {ctx}: {k} µs", []).append(v)
    for run in load(side, "memory"):
        for p in run["points"]:
            name = f"measure-memory {p['cache']} {p['context'] // 1024}K × {p['batch']}"
            q.setdefault(f"{name}: prefill s", []).append(p["prefill_ms"] / 1e3)
            # report version 3 names the time of one decode step of the whole batch for what it is; 2 called it per token
            q.setdefault(f"{name}: decode ms/step", []).append(p.get("decode_ms_per_step", p.get("decode_ms_per_token")))
            q.setdefault(f"{name}: prefill peak GiB", []).append(p["peak_prefill"] / 2**30)
            q.setdefault(f"{name}: decode peak GiB", []).append(p["peak_decode"] / 2**30)
    return {k: statistics.median(v) for k, v in q.items()}


old, new = quantities("old"), quantities("new")
device = load("new", "attention")[0]["device"]
rows = [{"quantity": k, "old": old[k], "new": new[k], "ratio": new[k] / old[k] if old[k] else None} for k in old if k in new]
(out / "compare.json").write_text(json.dumps({"device": device, "rows": rows}, indent=1))
print(f"device: {device}\n\n| quantity | old | new | new / old |\n|---|---:|---:|---:|")
for r in rows:
    ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
    print(f"| {r['quantity']} | {r['old']:.3f} | {r['new']:.3f} | {ratio} |")
