#!/usr/bin/env bash
# Before/after speed of a change that must not alter speed: two built trees of this project (each with dist/ and
# build/kernels) on the same GPU, old and new alternating twice, in one run. Each round times
#   - attention on codes (dist/bench/commvq-attention-bench.js: one decode step of one layer at 32K and 128K), and
#   - one measure-memory point (its arguments given per tree, since the flag grammar may differ between them),
# then scripts/bench/compare-trees.py prints ours-new / ours-old per quantity (median of the rounds; ROUNDS=N, default 2).
#
#   bash .device/run.sh bash scripts/bench/compare-trees.sh OUT .old "--cache commvq --bits 1 --context 32k" \
#     . "--cache commvq:bits=1 --context 32k"
set -euo pipefail
out=$1 old=$2 old_args=$3 new=$4 new_args=$5
root=$PWD
mkdir -p "$out"
memory="measure-memory --random-weights $root/scripts/bench/llama-3.1-8b.config.json --device cuda --decode-tokens 16 --json"
for round in $(seq 1 "${ROUNDS:-2}"); do
  for side in old new; do
    if [ $side = old ]; then dir=$old args=$old_args; else dir=$new args=$new_args; fi
    (cd "$dir" && node dist/bench/commvq-attention-bench.js --contexts 32768,131072) > "$out/$side-$round-attention.json"
    # shellcheck disable=SC2086 # the per-tree arguments are words
    (cd "$dir" && node bin/run.js $memory $args) > "$out/$side-$round-memory.json"
  done
done
python3 "$root/scripts/bench/compare-trees.py" "$out"
