#!/bin/bash
# The held-out figures on an image zoo model's card: NLL at K = 0, 1, 5 and sample quality at
# K = 1 and K = 5 (FID, KID, fidelity, diversity, memorisation, each beside what real held-out
# drawings score) on 12 held-out characters of the test split, 4 importance samples. Run from
# the repository root:
#   PYTHON=.venv/bin/python bash benchmarks/zoo_images.sh omniglot-diffusion omniglot:../shared/data/omniglot
#   PYTHON=.venv/bin/python bash benchmarks/zoo_images.sh glyphs-diffusion
# (any checkpoint folder works in place of a zoo name). Writes $OUT/<name>.k1.json and .k5.json.
set -e
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONPATH=src
MODEL=${1:?usage: zoo_images.sh MODEL [DATA]}
DATA=${2:+--data $2}
OUT=${OUT:-runs/zoo_cards}
PY=${PYTHON:-python}
mkdir -p "$OUT"
NAME=$(basename "$MODEL")
for K in 1 5; do
  $PY -m fewgen eval "$MODEL" $DATA --split test --shots 0,$K --max-tasks 12 --importance-samples 4 \
      --metrics nll,fid,kid,fidelity,diversity,memorization --quiet --json "$OUT/$NAME.k$K.json"
done
