#!/usr/bin/env bash
# The Llama-3.1-8B-size benchmark in one command on one GPU: our engine, then PyTorch transformers
# (LlamaForCausalLM from the same config, bf16, sdpa, random weights), then the table of ratios. Writes
# ours.json, torch.json and report.md to OUT_DIR (default bench-out).
#
#   npm run build && ../shared/device/bundle.sh          # here
#   bash .device/run.sh bash scripts/bench/llama.sh OUT   # on the GPU machine
set -euo pipefail
out=${1:-bench-out}
decode=${DECODE:-1024,8192,32768}
prefill=${PREFILL:-8192,32768}
config=scripts/bench/llama-3.1-8b.config.json
mkdir -p "$out"
node dist/bench/llama-bench.js --config "$config" --decode "$decode" --prefill "$prefill" > "$out/ours.json"
python3 scripts/bench/torch_llama.py "$config" --decode "$decode" --prefill "$prefill" > "$out/torch.json"
{
  echo "Command: bash scripts/bench/llama.sh (DECODE=$decode PREFILL=$prefill); $(date -u +%Y-%m-%d)"
  echo
  node dist/bench/llama-report-cli.js "$out/ours.json" "$out/torch.json"
} | tee "$out/report.md"
