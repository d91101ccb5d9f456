"""Time to quality: training seconds until the held-out 5-shot NLL first reaches 125, 120, 118 nats.

Trains the README's Omniglot run (``fewgen train --data omniglot:../shared/data/omniglot
--steps 100000 --set train.val_every=250``: the default amortized image VAE) through the
library (:func:`fewgen.training.train` with a ``callback``), and every ``--eval-every`` steps
scores the live model on the held-out test alphabets: the mean over test characters of the
K-shot NLL of their query drawings (:func:`fewgen.evaluate.conditional_nll`, the protocol of
``fewgen eval``, amortized adaptation), an IWAE bound with ``--importance-samples`` (10: a few
nats above ``fewgen eval``'s 100-sample figure), always on the same tasks, queries and noise.

The training clock is the run's own (``train.clock``: wall seconds by default, ``--set
train.clock=cpu`` for the process's CPU seconds, all threads; :meth:`fewgen.training.Run.call_back`
pauses it while evaluating): it counts every step, validation and checkpoint write of ``fewgen train``, not
the evaluations, whose seconds are reported separately, nor loading the data. A target's time
is that of the first evaluation at or below it, so it is late by at most ``--eval-every``
steps. The run stops when every target is reached or after ``--max-seconds`` of training.
``--set KEY=VALUE`` changes the config (the same overrides as ``fewgen train``), so a
candidate default is measured with the same script::

    PYTHONPATH=src python benchmarks/time_to_quality.py --threads 2 --json ttq.json
    PYTHONPATH=src python benchmarks/time_to_quality.py --set train.lr=2e-3 --json ttq_lr.json

Absolute seconds depend on the machine and what else runs on it: the script prints the load
average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

OMNIGLOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"
README_RUN = ["train.steps=100000", "train.val_every=250"]  # the README's command, minus its time budget


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=f"omniglot:{OMNIGLOT}", help="data spec (default: the two Omniglot archives)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--eval-every", type=int, default=100, help="evaluate every this many steps (default 100)")
    ap.add_argument("--max-seconds", type=float, default=1800.0, help="training-clock budget (default 1800)")
    ap.add_argument("--targets", default="125,120,118", help="NLL targets in nats (default 125,120,118)")
    ap.add_argument("--shots", type=int, default=5, help="K of the held-out NLL (default 5)")
    ap.add_argument("--importance-samples", type=int, default=10, help="IWAE samples per query (default 10)")
    ap.add_argument("--eval-tasks", type=int, default=0, help="held-out tasks, a seeded subset (default 0 = all)")
    ap.add_argument("--eval-queries", type=int, default=10,
                    help="queries per evaluation episode (default 10: each of a task's 20 drawings once)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    ap.add_argument("--out", help="keep the run folder here (default: a temporary folder, removed)")
    ap.add_argument("--json", help="write the results here")
    return ap.parse_args()


def make_evaluator(test, cfg, args, targets: list[float], record: dict):
    """The callback: every ``--eval-every`` steps the held-out NLL; True once every target is met."""
    from dataclasses import replace

    from fewgen.adaptation import adapt
    from fewgen.evaluate import conditional_nll

    ecfg = replace(cfg.eval, importance_samples=args.importance_samples, chunk=args.importance_samples,
                   max_queries=args.eval_queries, seed=0)

    def evaluate(run) -> bool:
        step = run.state.step
        if step % args.eval_every:
            return False
        train_s, started = run.clock() - run.t0, time.time()
        run.model.eval()

        def adapt_fn(support, mask, steps):
            return adapt(run.model, support, mask, conditional=True)

        with run.averaged():  # the weights validation scores and checkpoints keep (train.ema)
            nll = conditional_nll(adapt_fn, test, args.shots, 0, ecfg)["nll_nats"]
        eval_s = time.time() - started
        record["evals"].append({"step": step, "train_seconds": train_s, "nll": nll, "eval_seconds": eval_s})
        for t in targets:
            if nll <= t and str(t) not in record["reached"]:
                record["reached"][str(t)] = {"train_seconds": train_s, "step": step, "nll": nll}
        print(f"step {step:6d}  train {train_s:7.1f} s  K={args.shots} NLL {nll:7.2f}  (eval {eval_s:4.1f} s)",
              flush=True)
        return len(record["reached"]) == len(targets)

    return evaluate


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from fewgen.config import Config, apply_overrides, config_to_dict
    from fewgen.errors import ConfigError
    from fewgen.meta import CONDITIONAL
    from fewgen.tasks.spec import load_tasks
    from fewgen.training import train

    targets = sorted((float(t) for t in args.targets.split(",")), reverse=True)
    cfg = apply_overrides(Config(), [f"data.spec={args.data}", *README_RUN, f"train.max_seconds={args.max_seconds}",
                                     *args.set])
    if cfg.train.algo not in CONDITIONAL:
        raise ConfigError(f"time_to_quality scores amortized adaptation (no fine-tuning): train.algo must be one "
                          f"of {', '.join(CONDITIONAL)}, not {cfg.train.algo}")
    print(f"uptime load average {load_average()}; {torch.get_num_threads()} threads; overrides {args.set or 'none'}")
    t = time.time()
    tasks = load_tasks(cfg.data.spec, cfg.data)
    test = tasks.split(cfg.data.split_fractions, cfg.data.split_seed, cfg.data.split_file)["test"]
    test = test.seeded_subset(args.eval_tasks, 0)
    setup_s = time.time() - t
    record = {"evals": [], "reached": {}}
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="ttq_"))
    try:
        res = train(cfg, out, progress=False, tasks=tasks, callback=make_evaluator(test, cfg, args, targets, record))
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    print(f"\n{res.steps} steps in {res.seconds:.0f} s of training ({cfg.train.clock} clock); "
          f"{len(record['evals'])} evaluations took "
          f"{sum(e['eval_seconds'] for e in record['evals']):.0f} s (not counted); data loading {setup_s:.1f} s")
    print(f"held-out K={args.shots} NLL ({len(test)} tasks, IWAE {args.importance_samples}), first evaluation at or below:")
    for tgt in targets:
        r = record["reached"].get(str(tgt))
        print(f"  {tgt:6.1f} nats: " + (f"{r['train_seconds']:7.1f} s (step {r['step']}, {r['nll']:.2f})" if r
                                        else f"not reached in {res.seconds:.0f} s"))
    print(f"load average after: {load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "threads": torch.get_num_threads(), "overrides": args.set, "targets": targets, "shots": args.shots,
            "importance_samples": args.importance_samples, "eval_tasks": len(test), "eval_every": args.eval_every,
            "steps": res.steps, "train_seconds": res.seconds, "clock": cfg.train.clock, "setup_seconds": setup_s,
            "load_average_end": load_average(),
            "config": config_to_dict(cfg), **record}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
