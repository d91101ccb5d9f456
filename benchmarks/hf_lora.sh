#!/bin/bash
# hf_causal_lm on held-out `words` languages: in-context, zero-init LoRA, Reptile-meta-learned
# LoRA, and both, at K = 1, 5, 10 (bits per character). One run at a time, one thread; each
# step below stays under 10 minutes on one CPU thread. Run from the repository root:
#   bash benchmarks/hf_lora.sh            (writes runs/hf_*, runs/eval_*.json)
set -e
export OMP_NUM_THREADS=1 PYTHONPATH=src
FG="python -m fewgen"
HF="--set model.family=hf_causal_lm --set model.extra={path='runs/hf_words',condition='both',rank=8}"
INNER="--set train.inner_steps=5 --set train.inner_lr=0.03"
$FG export-hf --data words --out runs/hf_words --steps 3000 --max-seconds 480
$FG train --data words --algo reptile --steps 0 $HF $INNER --out runs/hf_zero --quiet   # zero-init LoRA
$FG train --data words --algo reptile --steps 100000 $HF $INNER --set train.shots=10 --set train.min_shots=1 \
    --set train.meta_batch=4 --set train.queries=10 --set train.max_seconds=420 --set train.val_every=100000 \
    --out runs/hf_reptile
EVAL="--split test --shots 1,5,10 --max-examples 40 --samples 0 --quiet"
$FG eval runs/hf_zero --algo amortized --steps 0 $EVAL --json runs/eval_incontext.json     # in-context only
$FG eval runs/hf_zero --algo reptile --steps 5,20 $EVAL --json runs/eval_zero_lora.json    # zero-init LoRA
$FG eval runs/hf_reptile --algo reptile --steps 5,20 $EVAL --json runs/eval_meta_lora.json # meta-learned LoRA
$FG eval runs/hf_zero --algo hybrid --steps 5,20 $EVAL --json runs/eval_zero_both.json     # prompt + zero-init LoRA
$FG eval runs/hf_reptile --algo hybrid --steps 5,20 $EVAL --json runs/eval_meta_both.json  # prompt + meta-learned LoRA
