"""PyTorch baseline of one value-compressor training step (spec §5.1, §5.5), for src/bench/value-step-bench.ts.

LlamaForCausalLM from a config, bf16, random weights, frozen; one ValueCompressor per layer (spec §5.2 sizes) in f32
under torch.autocast(bf16) (bf16 GEMMs with f32 accumulation, as the reference's bf16 training), trainable. Each
attention module is replaced by one that, from its exact q, k (post-RoPE) and v:
  o  = o_proj(sdpa(q, k, v))                                   exact; the layer's output (layer-local teacher forcing)
  ℓ  = out(GELU(enc1(LayerNorm(prescale(v)))))                 encoder logits, computed once
  ô  = o_proj(sdpa(q, k, decode(gumbel_softmax_hard(ℓ))))      quantized pass; attn_mse = mean((ô − o)²)
  v̂′ = decode(gumbel_softmax_hard(ℓ)) (a second sample)         value_mse = mean((v̂′ − v)²)
loss = (1/L)·Σ(value_mse/2 + attn_mse); backward; clip_grad_norm_ 1.0; AdamW(0.9, 0.95, eps 1e-8, wd 0.1, fused).
The encoder runs once per layer and feeds both samples (the reference calls the whole compressor twice; the gradient
is the same, and our engine does the same).

Times the step with torch.cuda.synchronize() (median of --steps after --warmup), and a plain forward for reference.
Prints one JSON object.

Usage: python3 torch_value_step.py CONFIG.json [--tokens 8192] [--bits 2,1] [--steps 3] [--warmup 1]
"""
import argparse, json, statistics, time
import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama import modeling_llama
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

p = argparse.ArgumentParser()
p.add_argument("config")
p.add_argument("--tokens", type=int, default=8192)
p.add_argument("--bits", default="2,1")
p.add_argument("--steps", type=int, default=3)
p.add_argument("--warmup", type=int, default=1)
args = p.parse_args()


class ValueCompressor(nn.Module):
    """spec §5.2–5.4: LayerNorm → Linear → GELU → Linear → 4-way Gumbel choice per 2 bits; decode = bits·E."""

    def __init__(self, bits, D, scale):
        super().__init__()
        n_e = int(D * bits) // 2
        embed = 4 * n_e
        inter = embed if embed == 6144 else min(4096, embed)
        self.norm1 = nn.LayerNorm(D, eps=1e-5)
        self.enc1 = nn.Linear(D, inter)
        self.out = nn.Linear(inter, embed)
        self.embedding = nn.Parameter(torch.randn(2 * n_e, D))
        self.register_buffer("learnable_scale", scale)  # make-scale's statistic, frozen

    def encode_logits(self, v):
        u = v / (self.learnable_scale + 1e-6)
        rho = u.norm(dim=-1, keepdim=True)
        logits = self.out(F.gelu(self.enc1(self.norm1(u / (rho + 1e-6)))))
        return logits, rho

    def sample_bits(self, logits):
        y = F.gumbel_softmax(logits.view(logits.shape[0], -1, 4), tau=1.0, hard=True)
        return (y[..., :2] + y[..., 2:3]).reshape(logits.shape[0], -1)  # category → bits (spec §5.3 step 6)

    def decode(self, bits, rho):
        w = bits @ self.embedding
        return w / (w.norm(dim=-1, keepdim=True) + 1e-6) * (rho + 1e-6) * (self.learnable_scale + 1e-6)


class State:
    compressors = None  # list per layer while training, None for a plain forward
    value_mse = []
    attn_mse = []


def attention_forward(self, hidden_states, position_embeddings=None, attention_mask=None, **kwargs):
    B, T, _ = hidden_states.shape
    hd = self.head_dim
    q = self.q_proj(hidden_states).view(B, T, -1, hd).transpose(1, 2)
    k = self.k_proj(hidden_states).view(B, T, -1, hd).transpose(1, 2)
    v = self.v_proj(hidden_states).view(B, T, -1, hd).transpose(1, 2)
    cos, sin = position_embeddings
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    g = self.num_key_value_groups
    k_rep = repeat_kv(k, g)  # as transformers' sdpa path: the flash backend gets equal head counts
    o = F.scaled_dot_product_attention(q, k_rep, repeat_kv(v, g), is_causal=True)
    o = self.o_proj(o.transpose(1, 2).reshape(B, T, -1))
    if State.compressors is not None:
        comp = State.compressors[self.layer_idx]
        v_tok = v.transpose(1, 2).reshape(B * T, -1)  # [T, H_kv·D_h], HF layout
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits, rho = comp.encode_logits(v_tok)
            v_a = comp.decode(comp.sample_bits(logits), rho).to(v.dtype).view(B, T, -1, hd).transpose(1, 2)
            o_a = F.scaled_dot_product_attention(q, k_rep, repeat_kv(v_a, g), is_causal=True)
            o_a = self.o_proj(o_a.transpose(1, 2).reshape(B, T, -1))
            State.attn_mse.append(F.mse_loss(o_a.float(), o.detach().float()))
            v_b = comp.decode(comp.sample_bits(logits), rho)
            State.value_mse.append(F.mse_loss(v_b.float(), v_tok.float()))
    return o, None


modeling_llama.LlamaAttention.forward = attention_forward

torch.manual_seed(0)
cfg = LlamaConfig.from_dict(json.load(open(args.config)))
cfg._attn_implementation = "sdpa"
with torch.device("cuda"):
    model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()  # random N(0, 0.02) init, made on the GPU
model.requires_grad_(False)
T = args.tokens
D = cfg.num_key_value_heads * (getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
L = cfg.num_hidden_layers
ids = torch.randint(0, cfg.vocab_size, (1, T), device="cuda")


def timed(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) * 1e3


def plain_forward():
    with torch.no_grad():
        model(input_ids=ids, use_cache=False, logits_to_keep=1)


def run_bits(bits):
    with torch.device("cuda"):
        comps = [ValueCompressor(bits, D, 0.5 + torch.rand(D)) for _ in range(L)]
    params = [p for c in comps for p in c.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, fused=True)
    State.compressors = comps

    def step():
        State.value_mse, State.attn_mse = [], []
        model(input_ids=ids, use_cache=False, logits_to_keep=1)
        n = len(State.value_mse)
        loss = torch.stack(State.value_mse).sum() / (2 * n) + torch.stack(State.attn_mse).sum() / n
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        State.value_mse, State.attn_mse = [], []
        return loss

    torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup):
        timed(step)
    times = [timed(step) for _ in range(args.steps)]
    result = {"median_ms": statistics.median(times), "all_ms": times,
              "trainable_params": sum(p.numel() for p in params),
              "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
    State.compressors = None
    del comps, params, opt
    torch.cuda.empty_cache()
    return result


result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
          "transformers": __import__("transformers").__version__, "tokens": T, "steps": {}}
timed(plain_forward)  # warm-up
result["forward_ms"] = statistics.median([timed(plain_forward) for _ in range(3)])
for bits in [int(b) for b in args.bits.split(",") if b]:
    try:
        result["steps"][bits] = run_bits(bits)
    except torch.OutOfMemoryError as e:  # report it rather than lose the other measurements
        State.compressors = None
        torch.cuda.empty_cache()
        result["steps"][bits] = {"error": f"out of memory: {str(e).splitlines()[0]}"}
print(json.dumps(result))
