"""Meta-train a generator over the tasks of a data source.

examples:
  fewgen train --data glyphs --out runs/glyphs --steps 2000
  fewgen train --data omniglot:../shared/data/omniglot --out runs/omni --shots 5 --set train.lr=5e-4
  fewgen train --out runs/omni --resume            # continue an interrupted run exactly
  fewgen train --data words --set model.family=text_ngram --out runs/ngram   # the n-gram baseline: counted, seconds
  fewgen train --data omniglot --out runs/gpu --device cuda --precision bf16 --compile
  torchrun --nproc_per_node 4 -m fewgen train --data omniglot --out runs/ddp   # 4 processes
"""

from __future__ import annotations

import argparse

from ..config import TrainConfig, replace
from .common import add_config_args, add_overwrite_arg, base_config, finite_float, with_data
from .paths import out_folder, spec_paths

HELP = "meta-train a generator (progress bar, validation, checkpoints, --resume)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="SPEC", help="data spec: glyphs, omniglot[:PATH], folder:PATH, words, text:PATH, toy")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (the checkpoint)")
    p.add_argument("--algo", help="meta-learning algorithm (default amortized)")
    p.add_argument("--steps", type=int, help="meta-training steps")
    p.add_argument("--shots", type=int, help="maximum support size K")
    p.add_argument("--seed", type=int, help="seed (fixes everything)")
    p.add_argument("--max-seconds", type=finite_float, help="stop and save after this much time (train.clock: wall or "
                   "cpu seconds); without --steps (or train.steps) the budget alone ends the run")
    p.add_argument("--device", help="auto (CUDA if visible, else CPU; the default), cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=("fp32", "bf16"), help="bf16: autocast of the meta-loss (GPUs)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the meta-loss (falls back to eager with a warning)")
    add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    add_overwrite_arg(p, "a new run replaces it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..distributed import is_main
    from ..training import train

    # Only rank 0 checks: the other processes of a torchrun start may see the folder rank 0 just made.
    out = out_folder(args.out, inputs=[*spec_paths(args.data), *([args.config] if args.config else [])],
                     overwrite=args.overwrite or not is_main(), resume=args.resume)
    if args.resume:
        from ..training import run_config

        cfg = run_config(out)
    else:
        cfg = with_data(base_config(args), args.data)
    if args.max_seconds and args.steps is None and not args.resume and cfg.train.steps == TrainConfig.steps:
        from ..training import OPEN_ENDED_STEPS

        args.steps = OPEN_ENDED_STEPS  # a time budget and no step count: the budget decides
    changes = {k: v for k, v in {"algo": args.algo, "steps": args.steps, "shots": args.shots, "seed": args.seed,
                                 "max_seconds": args.max_seconds, "device": args.device,
                                 "precision": args.precision, "compile": args.compile}.items() if v is not None}
    if changes:
        cfg = replace(cfg, train=changes)
    res = train(cfg, out, resume=args.resume, progress=not args.quiet)
    best = f", best meta-val loss {res.best_val:.2f}" if res.best_val is not None else ""
    if is_main():  # one line per run, not per process
        print(f"{'stopped' if res.interrupted else 'trained'} {res.steps} steps in {res.seconds:.0f}s{best}; checkpoint: {out}")
    return 130 if res.interrupted else 0
