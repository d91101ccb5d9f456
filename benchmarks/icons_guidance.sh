#!/bin/bash
# Guidance and sampler sweep of a colour diffusion checkpoint on the icons' meta-validation names
# (K=1, 32 samples per name, 5 real held-out icons per name at most): fidelity, diversity and
# memorisation beside what the names' real icons score, one JSON per setting in $OUT, then a table
# (benchmarks/quality_sweep.py). The target reads: fidelity >= real with memorisation <= real.
#   PYTHON=.venv/bin/python bash benchmarks/icons_guidance.sh runs/icons/diffusion_ema runs/icons_g/ema
#   SAMPLER=ddpm GUIDANCES="1.5 2" bash benchmarks/icons_guidance.sh runs/icons/diffusion_ema runs/icons_g/ema
# SPLIT=test scores the held-out test names instead (to report a setting chosen on val, not to choose).
set -e
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONPATH=src
RUN=${1:?usage: icons_guidance.sh RUN OUT}
OUT=${2:?usage: icons_guidance.sh RUN OUT}
PY=${PYTHON:-python}
SPLIT=${SPLIT:-val}
SAMPLER=${SAMPLER:-ddim}
mkdir -p "$OUT"
for g in ${GUIDANCES:-1 1.5 1.75 2 2.5 3 4 6}; do
  f=$OUT/${SPLIT}_${SAMPLER}_g${g}_k1.json
  [ -f $f ] && continue
  $PY -m fewgen eval $RUN --split $SPLIT --shots 1 --max-tasks 100 --max-queries 5 --importance-samples 1 \
      --metrics fidelity,memorization,diversity --samples 32 --guidance $g --sampler $SAMPLER --quiet --json $f > /dev/null
done
$PY benchmarks/quality_sweep.py $OUT/${SPLIT}_*_k1.json
