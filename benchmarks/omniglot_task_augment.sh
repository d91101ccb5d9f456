#!/bin/bash
# Task augmentation on held-out Omniglot alphabets, for both image families at an equal CPU
# budget: the attention VAE (configs/omniglot_25min.toml) and the diffusion model
# (configs/omniglot_diffusion.toml), each with data.task_augment=[] (none) and with the
# default (rot90, flip: every rotation and mirror of a character is a new character). Then,
# on the same held-out characters and supports: conditional NLL at K = 0, 1, 5 (the VAE's
# IWAE bound, 100 samples; the diffusion model's VDM bound, 50 times) and the diffusion model's own samples (FID,
# KID, fidelity, diversity, memorisation, each beside what real held-out drawings score).
# Two trainings run side by side, one thread each, on the CPU clock. Run from the repository root:
#   BUDGET=600 bash benchmarks/omniglot_task_augment.sh     (writes runs/oaug_*)
set -e
export OMP_NUM_THREADS=1 PYTHONPATH=src
FG="${PYTHON:-python} -m fewgen"  # e.g. PYTHON=.venv/bin/python
BUDGET=${BUDGET:-600}
COMMON="--max-seconds $BUDGET --set train.clock=cpu --quiet"
for fam in vae diff; do
  cfg=configs/omniglot_25min.toml; [ $fam = diff ] && cfg=configs/omniglot_diffusion.toml
  $FG train --config $cfg --out runs/oaug_${fam}_none $COMMON --set 'data.task_augment=[]' &
  $FG train --config $cfg --out runs/oaug_${fam}_aug $COMMON --set 'data.task_augment=["default"]' &
  wait
done
EVAL="--split test --shots 1,5 --max-tasks 12 --quiet --no-baseline"
for run in vae_none vae_aug; do
  $FG eval runs/oaug_$run $EVAL --importance-samples 100 --json runs/oaug_$run.json
done
for run in diff_none diff_aug; do
  $FG eval runs/oaug_$run $EVAL --importance-samples 50 --metrics nll,fid,kid,fidelity,diversity,memorization \
      --json runs/oaug_$run.json
done
