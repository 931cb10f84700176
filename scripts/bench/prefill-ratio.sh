#!/bin/bash
# Issue 15's measurement: the CommVQ prefill against dense on one card, split by phase (layers' forward, key encoding,
# value encoding), in both prefill modes, at 1 and 2 bits, at 32K and 128K (measure-memory --random-weights), and the
# per-cell time of `eval niah --lengths 128k --depths 3`, dense against CommVQ-1 (each example's prefill and decode
# milliseconds land in OUT/niah-*/times/niah.jsonl). Random weights and random codebooks: speed does not depend on them.
#
# Run on the GPU machine from the project root, after `npm run build` and ../shared/device/bundle.sh here. Each part
# fits one 10-minute device call:
#   bash scripts/bench/prefill-ratio.sh OUT mm32      # measure-memory, five caches at 32K     (~1 min)
#   bash scripts/bench/prefill-ratio.sh OUT mm128     # the same at 128K                        (~4 min)
#   bash scripts/bench/prefill-ratio.sh OUT niah TOKENIZER_DIR   # NIAH 128K × 3 depths, dense and CommVQ-1 (~4 min)
# TOKENIZER_DIR holds tokenizer.json and tokenizer_config.json (e.g. a copy of ../shared/fixtures/tiny-llama carried
# to the machine); the model folder is made from scripts/bench/llama-3.1-8b.config.json and those files.
set -euo pipefail
out=${1:?usage: prefill-ratio.sh OUT mm32|mm128|niah [TOKENIZER_DIR]}
part=${2:?usage: prefill-ratio.sh OUT mm32|mm128|niah [TOKENIZER_DIR]}
here=$(cd "$(dirname "$0")" && pwd)
config=$here/llama-3.1-8b.config.json
run() { bash .device/run.sh node bin/run.js "$@"; }
mkdir -p "$out"
caches=dense,commvq:bits=1,commvq:bits=1,prefill=strict,commvq:bits=2,commvq:bits=2,prefill=strict

case $part in
  mm32 | mm128)
    context=${part#mm}k
    run measure-memory --random-weights "$config" --device cuda --cache "$caches" --context "$context" \
      --decode-tokens 8 --json > "$out/measure-memory-$context.json"
    ;;
  niah)
    tokenizer=${3:?niah needs TOKENIZER_DIR}
    model=$out/llama-3.1-8b-random
    mkdir -p "$model"
    cp "$config" "$model/config.json"
    cp "$tokenizer/tokenizer.json" "$tokenizer/tokenizer_config.json" "$model/"
    for cache in dense commvq:bits=1; do
      run eval niah --model "$model" --random-weights --device cuda --cache "$cache" --lengths 128k --depths 3 \
        --out "$out/niah-${cache//[:=]/-}"
    done
    ;;
  *)
    echo "prefill-ratio.sh: unknown part '$part' (mm32, mm128 or niah)" >&2
    exit 2
    ;;
esac
