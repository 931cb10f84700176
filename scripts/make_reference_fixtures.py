"""Writes files in the exact formats of the CommVQ reference's released codebooks (spec §3.6, §5.8), with PyTorch and
safetensors, for `commvq import-reference` (issue 19). Run it where PyTorch is installed (the GPU machine).

  tiny   a small set for the tests, at the dims of a fixture model (tiny-llama: 2 layers, 1 KV head of 128):
         python scripts/make_reference_fixtures.py tiny --model ../shared/fixtures/tiny-llama --out test/fixtures/reference
  real   a synthetic set of the released sizes (Llama-3.1-8B-Instruct: 32 layers, 8 groups, R = 21 at 2 bits,
         clustering_centers [4096, 128]; about 10.9 GiB of key files and 1.5 GB of bf16 value compressors), to time
         the import:
         python scripts/make_reference_fixtures.py real --bits 2 --out /scratch/commvq-real
  check  loads a folder pair the way the reference's loader does (spec §6.1): every {l:03d}_{g}.pt with torch.load
         (weights_only), G from the 000_*.pt files, R from len(steps), clustering_centers stacked to [R, G, N_h², 2P]
         and compared with the centres θ gives; the value tensors' shapes against quant_bits. For export-reference's
         output and for the sets above:
         python scripts/make_reference_fixtures.py check --values DIR --keys DIR

Both sets are seeded (torch.Generator on the CPU), so two runs write the same tensors. Each set is two folders named
as the released repositories are: Llama-3.1-8B-Instruct-CommVQ-{b}bit (config.json with quant_bits, safetensors shards
and model.safetensors.index.json, as save_pretrained writes them) and Llama-3.1-8B-Instruct-CommVQ-{b}bit-codebook
({l:03d}_{g}.pt, torch.save of a dict, tensors saved from the GPU when there is one, as the reference's EM saves them).
"""
import argparse, glob, json, math, os, sys, time

import torch
from safetensors.torch import save_file, safe_open

# Llama-3.1-8B-Instruct's config.json (the fields the import checks, and the rest as released)
LLAMA_31_8B = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009], "head_dim": 128, "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": False,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.45.1",
    "use_cache": True, "vocab_size": 128256,
}


def commvq_fields(bits):
    """The fields finetune.py adds to config.json (spec §5.8); quant_bits is a float."""
    return {"is_stage1": True, "is_stage2": False, "use_mse_loss": True, "use_vq_loss": True, "n_e": 1024,
            "stage1_droppath": 0.0, "weight_vq_loss": None, "quant_bits": float(bits)}


def value_shapes(bits, D):
    """ValueCompressor(quant_bits, D) parameter shapes (spec §5.2)."""
    n_e = int(D * bits) // 2
    embed = 4 * n_e
    inter = embed if embed == 6144 else min(4096, embed)
    return {"embedding": [2 * n_e, D], "norm1.weight": [D], "norm1.bias": [D], "enc1.weight": [inter, D],
            "enc1.bias": [inter], "out.weight": [embed, inter], "out.bias": [embed], "learnable_scale": [D]}


def t_matrix(half, device):
    """T in {-1,0,1}^{2N²×2N} of spec §3.3: (Tθ)[2c+t, j] = C[c, 2j+t] for c = N·A + B."""
    n2 = half * half
    T = torch.zeros(2 * n2, 2 * half, dtype=torch.float32, device=device)
    c = torch.arange(n2, device=device)
    A, B = c // half, c % half
    T[2 * c, 2 * A] = 1
    T[2 * c, 2 * B + 1] = -1
    T[2 * c + 1, 2 * B] = 1
    T[2 * c + 1, 2 * A + 1] = 1
    return T


def centres_from_theta(theta, T):
    """clustering_centers [N², 2P] from θ [2N, P], as the reference builds them: one product with T, then PI layout."""
    n2, pairs = T.shape[0] // 2, theta.shape[1]
    return (T @ theta).reshape(n2, 2, pairs).transpose(1, 2).reshape(n2, 2 * pairs).contiguous()


def write_keys(out, layers, groups, residuals, half, pairs, gen, device):
    os.makedirs(out, exist_ok=True)
    T = t_matrix(half, device)
    for l in range(layers):
        for g in range(groups):
            steps = []
            for r in range(residuals):
                theta = (0.05 * torch.randn(2 * half, pairs, generator=gen)).to(device)
                mse = (1e-3 * torch.rand((), generator=gen)).to(device)
                steps.append({"mse_loss": mse, "theta": theta, "clustering_centers": centres_from_theta(theta, T)})
            final_error = float(1e-4 * torch.rand((), generator=gen))
            torch.save({"final_error": final_error, "steps": steps}, os.path.join(out, f"{l:03d}_{g}.pt"))


def write_values(out, config, bits, gen, extra_tensors=None, shards=2):
    """The value compressors (bf16, as released) in `shards` safetensors files with an index, plus config.json."""
    os.makedirs(out, exist_ok=True)
    L, D = config["num_hidden_layers"], config["num_key_value_heads"] * config["head_dim"]
    shapes = value_shapes(bits, D)
    files = [dict() for _ in range(shards)]
    for l in range(L):
        for name, shape in shapes.items():
            if name == "learnable_scale":
                t = 0.5 + torch.rand(shape, generator=gen)
            else:
                t = 0.1 * torch.randn(shape, generator=gen)
            files[l * shards // L][f"model.layers.{l}.self_attn.value_vq_model.{name}"] = t.to(torch.bfloat16).contiguous()
    for name, t in (extra_tensors or {}).items():
        files[0][name] = t.contiguous()
    names = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    weight_map, total = {}, 0
    for name, tensors in zip(names, files):
        save_file(tensors, os.path.join(out, name), metadata={"format": "pt"})
        for k, t in tensors.items():
            weight_map[k] = name
            total += t.numel() * t.element_size()
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({**config, **commvq_fields(bits)}, f, indent=2, sort_keys=True)


def dir_names(root, bits):
    return (os.path.join(root, f"Llama-3.1-8B-Instruct-CommVQ-{bits}bit"), os.path.join(root, f"Llama-3.1-8B-Instruct-CommVQ-{bits}bit-codebook"))


def cmd_tiny(a):
    gen = torch.Generator().manual_seed(a.seed)
    with open(os.path.join(a.model, "config.json")) as f:
        config = json.load(f)
    values, keys = dir_names(a.out, a.bits)
    # with --with-model-weights the fixture model's own weights ride along, as the LLM weights do in the released
    # checkpoint (7 MB for tiny-llama: not for committing); the importer reads the value_vq_model tensors only
    llm = {}
    if a.with_model_weights:
        with safe_open(os.path.join(a.model, "model.safetensors"), "pt") as f:
            for k in f.keys():
                llm[k] = f.get_tensor(k)
    write_values(values, config, a.bits, gen, extra_tensors=llm)
    write_keys(keys, config["num_hidden_layers"], config["num_key_value_heads"], a.residuals, a.half, config["head_dim"] // 2, gen, device())
    report(a.out)


def cmd_real(a):
    gen = torch.Generator().manual_seed(a.seed)
    values, keys = dir_names(a.out, a.bits)
    residuals = a.residuals or {1: 11, 2: 21}[a.bits]
    started = time.time()
    write_values(values, LLAMA_31_8B, a.bits, gen, shards=4)
    write_keys(keys, 32, 8, residuals, 64, 64, gen, device())
    print(f"wrote the set in {time.time() - started:.0f} s")
    report(a.out)


def cmd_check(a):
    """The reference's loader (spec §6.1), restated: what evaluation needs from the two folders, checked."""
    with open(os.path.join(a.values, "config.json")) as f:
        config = json.load(f)
    bits = config["quant_bits"]
    assert bits in (1, 2), f"quant_bits {bits}"
    L, G_model, dh = config["num_hidden_layers"], config["num_key_value_heads"], config["head_dim"]
    G = len(glob.glob(os.path.join(a.keys, "000_*.pt")))
    assert G == G_model, f"{G} files 000_*.pt, {G_model} KV heads"
    worst = 0.0
    R = None
    tables = {}
    for l in range(L):
        books = []
        for g in range(G):
            # weights_only: torch 2's restricted unpickler (torch 1.x's lacks BINFLOAT, which final_error needs)
            d = torch.load(os.path.join(a.keys, f"{l:03d}_{g}.pt"), map_location="cpu", weights_only=int(torch.__version__.split(".")[0]) >= 2)
            steps = d["steps"]
            R = R or len(steps)
            assert len(steps) == R, f"layer {l} group {g}: {len(steps)} steps, not {R}"
            assert isinstance(d["final_error"], float)
            for s in steps:
                theta, cc = s["theta"], s["clustering_centers"]
                assert s["mse_loss"].dim() == 0 and theta.dtype == torch.float32 and theta.shape[1] == dh // 2
                half = theta.shape[0] // 2
                T = tables.setdefault(half, t_matrix(half, "cpu"))
                worst = max(worst, (centres_from_theta(theta, T) - cc).abs().max().item())
            books.append(torch.stack([s["clustering_centers"] for s in steps]))
        codebook = torch.stack(books, dim=1)  # [R, G, N_h², 2P], as the reference stacks it
        assert codebook.shape[:2] == (R, G)
    with open(os.path.join(a.values, "model.safetensors.index.json")) as f:
        weight_map = json.load(f)["weight_map"]
    shapes = value_shapes(int(bits), G * dh)
    for l in range(L):
        for name, shape in shapes.items():
            key = f"model.layers.{l}.self_attn.value_vq_model.{name}"
            with safe_open(os.path.join(a.values, weight_map[key]), "pt") as f:
                assert list(f.get_slice(key).get_shape()) == shape, f"{key}: {f.get_slice(key).get_shape()} vs {shape}"
    print(f"OK: {L} layers, G = {G}, R = {R}, {int(bits)}-bit values; max |centres − Tθ| = {worst}")


def device():
    torch.backends.cuda.matmul.allow_tf32 = False  # the default; the centres must be T·θ in full f32
    return "cuda" if torch.cuda.is_available() else "cpu"


def report(root):
    for dirpath, _, files in sorted(os.walk(root)):
        size = sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
        print(f"{dirpath}: {len(files)} files, {size / 2**20:.1f} MiB")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tiny", help="a small set at a fixture model's dims")
    t.add_argument("--model", required=True, help="fixture model folder (config.json, model.safetensors)")
    t.add_argument("--out", required=True)
    t.add_argument("--bits", type=int, default=1, choices=[1, 2])
    t.add_argument("--residuals", type=int, default=3, help="R (the released sets: 11 at 1 bit, 21 at 2 bits)")
    t.add_argument("--half", type=int, default=4, help="N_h codewords per half (the reference: 64; small keeps the files small)")
    t.add_argument("--seed", type=int, default=19)
    t.add_argument("--with-model-weights", action="store_true", help="copy the fixture model's weights into the checkpoint too")
    r = sub.add_parser("real", help="a synthetic set of the released sizes")
    r.add_argument("--out", required=True)
    r.add_argument("--bits", type=int, default=2, choices=[1, 2])
    r.add_argument("--residuals", type=int, default=0, help="R (default 11 at 1 bit, 21 at 2 bits)")
    r.add_argument("--seed", type=int, default=19)
    c = sub.add_parser("check", help="load a folder pair as the reference's loader does")
    c.add_argument("--values", required=True)
    c.add_argument("--keys", required=True)
    a = p.parse_args()
    {"tiny": cmd_tiny, "real": cmd_real, "check": cmd_check}[a.cmd](a)


if __name__ == "__main__":
    main()
