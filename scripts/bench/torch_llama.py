"""PyTorch transformers baseline for scripts/bench/llama.sh: LlamaForCausalLM built from a config with random
weights, bf16, sdpa attention, on one GPU. Prints one JSON object with decode ms/token at each context, prefill
tokens/s at each length, and the measured device-to-device copy bandwidth.

Usage: python3 torch_llama.py CONFIG.json --decode 1024,8192,32768 --prefill 8192,32768
"""
import argparse, json, statistics, time
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.cache_utils import DynamicCache

p = argparse.ArgumentParser()
p.add_argument("config")
p.add_argument("--decode", default="1024,8192,32768")
p.add_argument("--prefill", default="8192,32768")
p.add_argument("--steps", type=int, default=32)
args = p.parse_args()

torch.manual_seed(0)
cfg = LlamaConfig.from_dict(json.load(open(args.config)))
cfg._attn_implementation = "sdpa"
with torch.device("cuda"):
    model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()  # random N(0, 0.02) init, made on the GPU
vocab = cfg.vocab_size


def copy_bandwidth():
    """bytes read + written per second by a 2 GiB device-to-device copy, median of 10"""
    src = torch.randn(2**30, dtype=torch.bfloat16, device="cuda")
    dst = torch.empty_like(src)
    times = []
    for i in range(13):
        torch.cuda.synchronize(); t = time.perf_counter(); dst.copy_(src); torch.cuda.synchronize()
        if i >= 3: times.append(time.perf_counter() - t)
    del src, dst
    return 2 * 2**31 / statistics.median(times)


@torch.no_grad()
def prefill(n):
    ids = torch.randint(0, vocab, (1, n), device="cuda")
    torch.cuda.synchronize(); t = time.perf_counter()
    out = model(ids, use_cache=True, past_key_values=DynamicCache(config=cfg), logits_to_keep=1)
    torch.cuda.synchronize()
    return time.perf_counter() - t, out


@torch.no_grad()
def decode(context):
    _, out = prefill(context)
    cache = out.past_key_values
    nxt = out.logits[:, -1:].argmax(-1)
    times = []
    for i in range(args.steps + 4):
        torch.cuda.synchronize(); t = time.perf_counter()
        out = model(nxt, past_key_values=cache, use_cache=True, logits_to_keep=1)
        nxt = out.logits[:, -1:].argmax(-1)
        torch.cuda.synchronize()
        if i >= 4: times.append(time.perf_counter() - t)
    del cache, out
    torch.cuda.empty_cache()
    return statistics.median(times) * 1e3


result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
          "transformers": __import__("transformers").__version__, "copy_bytes_per_s": copy_bandwidth(),
          "decode_ms_per_token": {}, "prefill_tokens_per_s": {}}
prefill(512)  # warm-up: kernels, cuBLAS heuristics
for n in [int(x) for x in args.prefill.split(",") if x]:
    times = [prefill(n)[0] for _ in range(3)]
    result["prefill_tokens_per_s"][n] = n / statistics.median(times)
    torch.cuda.empty_cache()
for n in [int(x) for x in args.decode.split(",") if x]:
    result["decode_ms_per_token"][n] = decode(n)
print(json.dumps(result))
