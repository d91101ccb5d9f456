#!/bin/bash
# The colour table: few-shot generation of held-out icon names (`icons`, 32x32 RGB, the themes
# that `make themes` installs), every model meta-trained for the same CPU budget on one thread
# (train.clock=cpu), then evaluated on the same held-out names, supports and queries.
#   bash benchmarks/icons_heldout.sh runs/icons            (BUDGET=900 CPU-seconds per model)
#   bash benchmarks/icons_heldout.sh runs/icons train diffusion   (one phase, one model)
#   SPLIT=val bash benchmarks/icons_heldout.sh runs/icons eval diffusion   (the same figures on the
#   meta-validation names, written to val_k1.json / val_k5.json: what a choice between models reads)
# Models: diffusion (image_diffusion), vae (image_vae, attention), transfer (image_vae meta-trained
# unconditionally on the pooled names, fine-tuned on the support at eval), diffusion_channels
# (diffusion with colour-permuted tasks added: data.task_augment = default + channels), diffusion_shot
# (diffusion whose U-Net takes one shot per sample as its template input, model.extra.template=shot),
# diffusion_wide (diffusion with twice the U-Net's width, model.hidden=64), diffusion_ema (diffusion
# validated and saved as a moving average of its weights, train.ema=0.999, as the Omniglot diffusion
# recipe), diffusion_hue (diffusion with hue-rotated tasks added: default + hue), style
# (diffusion on icons:by=theme: a task is a theme, its icons the examples; held-out themes).
# Each eval writes $RUN/<model>/heldout.json: NLL and bits/dim at K = 0, 1, 5, and the samples'
# FID, KID, fidelity, diversity, memorisation and support sensitivity at K = 1 and 5, each beside
# real held-out icons (sensitivity: how far the samples move when another name's shots replace the
# name's, from the same seed, over how far apart the two names' real icons are).
set -e
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONPATH=src
RUN=${1:?usage: icons_heldout.sh RUN [train|eval|all] [MODEL...]}
PHASE=${2:-all}
shift $(( $# < 2 ? $# : 2 ))
MODELS=${*:-diffusion vae transfer diffusion_channels}
BUDGET=${BUDGET:-900}
PY=${PYTHON:-python}  # e.g. PYTHON=.venv/bin/python
FG="$PY -m fewgen"
# train.ema=0: the rows of docs/results.md were trained without a weight average (the default before
# train.ema "auto" gave the diffusion model one); diffusion_ema sets it again (the last --set wins).
COMMON="--data icons --set train.clock=cpu --set train.max_seconds=$BUDGET --set train.ema=0 --steps 100000 --quiet"

train() {  # train MODEL: meta-train it unless its checkpoint exists (FORCE=1 trains it again)
  local out=$RUN/$1
  [ -f $out/model.safetensors ] && [ -z "$FORCE" ] && return
  case $1 in
    diffusion) $FG train $COMMON --set model.family=image_diffusion --out $out --overwrite ;;
    vae) $FG train $COMMON --set model.family=image_vae --out $out --overwrite ;;
    transfer) $FG train $COMMON --algo transfer --out $out --overwrite ;;
    diffusion_channels) $FG train $COMMON --set model.family=image_diffusion \
                          --set 'data.task_augment=["default", "channels"]' --out $out --overwrite ;;
    diffusion_shot) $FG train $COMMON --set model.family=image_diffusion --set model.extra.template=shot \
                      --out $out --overwrite ;;
    diffusion_wide) $FG train $COMMON --set model.family=image_diffusion --set model.hidden=64 --out $out --overwrite ;;
    diffusion_ema) $FG train $COMMON --set model.family=image_diffusion --set train.ema=0.999 --out $out --overwrite ;;
    diffusion_hue) $FG train $COMMON --set model.family=image_diffusion \
                     --set 'data.task_augment=["default", "hue"]' --out $out --overwrite ;;
    style) $FG train ${COMMON/--data icons/--data icons:by=theme} --set model.family=image_diffusion \
             --out $out --overwrite ;;
  esac
}

evaluate() {  # evaluate MODEL on the held-out names (SPLIT=val: the meta-validation names, to choose by)
  local steps=0 split=${SPLIT:-test} name=heldout
  [ $1 = transfer ] && steps=0,10
  [ $split = val ] && name=val
  for k in 1 5; do
    $FG eval $RUN/$1 --split $split --shots $k --steps $steps --max-tasks 100 --max-queries 5 \
        --importance-samples 25 --metrics nll,fid,kid,fidelity,diversity,memorization,sensitivity --samples 32 \
        --quiet --json $RUN/$1/${name}_k$k.json
  done
}

for m in $MODELS; do
  [ $PHASE = eval ] || train $m
  [ $PHASE = train ] || evaluate $m
done
