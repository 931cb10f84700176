#!/usr/bin/env python3
"""PyTorch side of the key-codebook EM benchmark: the reference EM (spec §3.4) written plainly in PyTorch, as the
reference script does it — explicit centres C = T·θ, torch.cdist, softmax, P^T·V matmul, θ = (TᵀWT)⁻¹TᵀW·M̃ — all
f32 on the GPU, over chunks of 262,144 tokens so that the 4096-wide distance and softmax matrices (16 GiB each at
1M tokens) fit beside each other. Same data recipe as src/bench/key-em-bench.ts (rank-32 signal + noise,
per-channel scales, per-token norm over all channels, PI layout), drawn by torch's RNG.

Times one init (E-step at τ = 1 on data-row centres + M-step), the mean of `--iters` EM iterations (E-step + M-step)
and one residual assignment on group 0, and — given our JSON (--ours) — the time the same layer would take with the
same number of iterations per stage as our run. Prints one JSON object.

    python3 scripts/bench/torch_key_em.py --ours ours.json > torch.json
"""
import argparse
import json
import math
import time

import torch

p = argparse.ArgumentParser()
p.add_argument("--tokens", type=int, default=1 << 20)
p.add_argument("--groups", type=int, default=8)
p.add_argument("--head-dim", type=int, default=128)
p.add_argument("--iters", type=int, default=5)
p.add_argument("--chunk", type=int, default=1 << 18)
p.add_argument("--ours", type=str, default=None)
a = p.parse_args()
dev = "cuda"
torch.backends.cuda.matmul.allow_tf32 = False  # f32 throughout, as the reference
N, G, D = a.tokens, a.groups, a.head_dim
P, NH, K = D // 2, 64, 4096
torch.manual_seed(0)

# data: key-like rows, prepared as §3.2; only group 0 is kept (every group costs the same)
width = G * D
z = torch.randn(N, 32, device=dev, dtype=torch.bfloat16)
basis = torch.randn(width, 32, device=dev, dtype=torch.bfloat16) * 0.5
x = (z @ basis.T + 0.3 * torch.randn(N, width, device=dev, dtype=torch.bfloat16)).float()
c = torch.arange(width, device=dev, dtype=torch.float32)
x *= 0.3 + 2 * torch.sin(0.37 * c).abs()
norm = x.norm(dim=1)
x = (x / norm[:, None]).view(N, G, 2, P).transpose(2, 3).reshape(N, G * D)  # HF -> PI
V = x[:, :D].contiguous()
n2 = norm.square()
del z, basis, x

# T of §3.3: [8192, 128]
T = torch.zeros(2 * K, 2 * NH, device=dev)
A = torch.arange(K, device=dev) // NH
B = torch.arange(K, device=dev) % NH
r = torch.arange(K, device=dev)
T[2 * r, 2 * A] += 1
T[2 * r, 2 * B + 1] += -1
T[2 * r + 1, 2 * B] += 1
T[2 * r + 1, 2 * A + 1] += 1


def centres(theta):  # theta [128, P] -> C [4096, D] (PI)
    return (T @ theta).view(K, 2, P).transpose(1, 2).reshape(K, D)


def e_step(C, tau):
    """Soft assignment in chunks: returns w [K], S = P^T V [K, D], hard_mse."""
    w = torch.zeros(K, device=dev)
    S = torch.zeros(K, D, device=dev)
    hard = torch.zeros((), device=dev)
    for s in range(0, N, a.chunk):
        v = V[s : s + a.chunk]
        dist = torch.cdist(v, C)
        prob = torch.softmax(-dist / tau, dim=1)
        hard += (n2[s : s + a.chunk] * dist.min(dim=1).values.square()).sum()
        w += prob.sum(0)
        S += prob.T @ v
        del dist, prob
    return w, S, hard / (N * D)


def m_step(w, S):
    w = w + 1e-8
    m = S / w[:, None]
    Mt = m.view(K, P, 2).transpose(1, 2).reshape(2 * K, P)  # M~[2c+t, j] = m_c[2j+t]
    W = w.repeat_interleave(2)
    lhs = T.T @ (W[:, None] * T)
    return torch.linalg.inv(lhs) @ (T.T @ (W[:, None] * Mt))


def residual(C):
    global V
    for s in range(0, N, a.chunk):
        v = V[s : s + a.chunk]
        idx = torch.cdist(v, C).argmin(dim=1)
        V[s : s + a.chunk] = v - C[idx]


def timed(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - t


def init():
    idx = torch.randint(0, N, (K,), device=dev)
    w, S, _ = e_step(V[idx], 1.0)
    return m_step(w, S)


init()  # warm-up (cuBLAS, allocator)
theta, t_init = timed(init)
iters = []
for s in range(a.iters + 1):
    tau = 1e-3 * (1e-5 / 1e-3) ** (s / 99)
    (w, S, hard), t_e = timed(lambda: e_step(centres(theta), tau))
    theta, t_m = timed(lambda: m_step(w, S))
    if s > 0:  # the first iteration is a warm-up
        iters.append(t_e + t_m)
_, t_res = timed(lambda: residual(centres(theta)))
iter_s = sum(iters) / len(iters)
out = {
    "device": torch.cuda.get_device_name(0),
    "torch": torch.__version__,
    "tokens": N,
    "headDim": D,
    "chunk": a.chunk,
    "initSeconds": t_init,
    "iterSeconds": iter_s,
    "residualSeconds": t_res,
    "itersTimed": len(iters),
}
if a.ours:
    ours = json.load(open(a.ours))
    stages = ours["stages"]
    out["sameLayerSeconds"] = sum(t_init + st["steps"] * iter_s + t_res for st in stages)
    out["sameLayerIterations"] = sum(st["steps"] for st in stages)
    out["oursSeconds"] = ours["totalSeconds"]
    out["speedup"] = out["sameLayerSeconds"] / ours["totalSeconds"]
print(json.dumps(out, indent=1))
