"""The few-shot benchmark: every method, the same budget, the same held-out tasks and support
sets; writes results.json, results.md (the table), plots and sample grids.

examples:
  fewgen bench --data omniglot:../shared/data/omniglot --quick --out runs/bench
  fewgen bench --data glyphs --eval-data omniglot:../shared/data/omniglot --methods amortized,maml,transfer,scratch --out runs/x
  fewgen bench --data omniglot --ckpt amortized=runs/omni --methods amortized,scratch --out runs/y
  fewgen bench --data words --methods amortized,transfer,ngram --out runs/t   # text: the n-gram baseline, fidelity
  fewgen bench --data omniglot --ckpt vae=runs/vae --ckpt diffusion=runs/diff --methods vae,diffusion --steps 0 --out runs/z
                                  # any checkpoints side by side under names of your choice (both VAE samplers shown)

On text the method ngram (a byte n-gram counted on the meta-train tasks, mixed with one fit on
the support) is the classical baseline; on images it is skipped.
"""

from __future__ import annotations

import argparse

from .common import add_config_args, add_overwrite_arg, base_config, finite_float

HELP = "benchmark meta-learning methods against the baselines (table + plots)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..bench import METHODS

    p.add_argument("--data", required=True, metavar="SPEC", help="meta-training data (SPEC+SPEC mixes sources)")
    p.add_argument("--eval-data", metavar="SPEC", default="", help="evaluate on another source (cross-domain)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--shots", default="1,5,10")
    p.add_argument("--steps", default="0,1,5,10")
    p.add_argument("--train-steps", type=int, default=1500, help="meta-training steps per method")
    p.add_argument("--train-seconds", type=finite_float, default=0.0, help="time budget per method (0 = none)")
    p.add_argument("--eval-tasks", type=int, default=40)
    p.add_argument("--ckpt", action="append", default=[], metavar="NAME=PATH",
                   help="use an existing checkpoint for a method, or add one as a row named NAME (list it in --methods)")
    p.add_argument("--quick", action="store_true", help="a small budget: about 10 minutes on 2 CPU cores")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--quiet", action="store_true")
    add_overwrite_arg(p)
    add_config_args(p)


def run(args: argparse.Namespace) -> int:
    from ..bench import BenchConfig, quick, run_bench
    from ..errors import FewgenError
    from ..evaluate import parse_int_list
    from .paths import out_folder, spec_paths

    ckpts = {}
    for item in args.ckpt:
        if "=" not in item:
            raise FewgenError(f"--ckpt '{item}' must look like NAME=PATH")
        m, path = item.split("=", 1)
        ckpts[m] = path
    out_folder(args.out, inputs=[*ckpts.values(), *spec_paths(args.data), *spec_paths(args.eval_data)],
               overwrite=args.overwrite)
    cfg = BenchConfig(data=args.data, eval_data=args.eval_data,
                      methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
                      shots=parse_int_list(args.shots, "shots"), steps=parse_int_list(args.steps, "steps"),
                      train_steps=args.train_steps, train_seconds=args.train_seconds, eval_tasks=args.eval_tasks,
                      seed=args.seed, ckpts=ckpts, base=base_config(args))
    if args.quick:
        cfg = quick(cfg)
    res = run_bench(cfg, args.out, progress=not args.quiet)
    from ..bench import results_markdown

    print(results_markdown(res))
    print(f"wrote {args.out}/results.json, results.md, nll.png, nll_vs_steps.png and sample grids")
    return 0
