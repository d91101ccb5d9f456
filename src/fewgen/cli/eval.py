"""Held-out evaluation: NLL of query examples given K support examples of the same task.

The unconditional NLL (empty support) is reported too, so the gain from conditioning shows.
NLL is importance-weighted (IWAE) for latent-variable models, in nats per example, with a
95% CI over tasks.

examples:
  fewgen eval runs/omni --data omniglot:../shared/data/omniglot --split test --shots 1,5 --json eval.json
  fewgen eval runs/user --data folder:./my_chars --split all --shots 1
"""

from __future__ import annotations

import argparse

from ..config import replace
from .common import write_json

HELP = "evaluate held-out conditional NLL (JSON report)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("--data", metavar="SPEC", help="data spec (default: the checkpoint's training data)")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    p.add_argument("--shots", default="1,5", help="comma-separated K values")
    p.add_argument("--steps", default="0", help="comma-separated fine-tuning step counts")
    p.add_argument("--importance-samples", type=int, default=None, help="IWAE samples (default 100)")
    p.add_argument("--max-tasks", type=int, default=None, help="evaluate at most this many tasks")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", metavar="OUT.json", help="write the report here")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import load
    from ..evaluate import default_adapt_fn, evaluate, format_report, parse_int_list
    from ..tasks.spec import load_split

    ck = load(args.checkpoint)
    cfg = ck.config
    spec = args.data or cfg.data.spec
    data_cfg = replace(cfg, data={"spec": spec}).data
    changes = {"shots": parse_int_list(args.shots, "shots"), "steps": parse_int_list(args.steps, "steps"),
               "split": args.split}
    for key, val in (("importance_samples", args.importance_samples), ("max_tasks", args.max_tasks),
                     ("seed", args.seed)):
        if val is not None:
            changes[key] = val
    ecfg = replace(cfg, eval=changes).eval
    ts = load_split(spec, data_cfg, args.split)
    report = evaluate(default_adapt_fn(ck.model), ts, ecfg, progress=not args.quiet)
    report = {"data": spec, "split": args.split, "checkpoint": str(args.checkpoint), **report}
    print(format_report(report))
    if args.json:
        print(f"wrote {write_json(args.json, report)}")
    return 0
