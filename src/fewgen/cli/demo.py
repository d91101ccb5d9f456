"""Meta-train on the embedded glyphs (offline), evaluate on held-out scripts, and write sample
grids of characters the model never saw — in a few minutes on a laptop CPU.

example:
  fewgen demo --out runs/demo
"""

from __future__ import annotations

import argparse

from .common import add_overwrite_arg, finite_float

HELP = "the quick tour: train on embedded glyphs, evaluate, write sample grids"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--seconds", type=finite_float, default=180.0, help="training time budget (default 180)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    add_overwrite_arg(p, "e.g. an earlier demo: replaces them")


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    from .paths import out_folder

    out_folder(args.out, overwrite=args.overwrite)
    r = run_demo(args.out, args.seconds, args.seed, progress=not args.quiet)
    u, k = r["eval"]["unconditional"], r["eval"]["shots"]
    print(f"\ntrained {r['train_steps']} steps in {r['train_seconds']:.0f}s on glyphs; held-out characters "
          f"({r['eval']['shots']['5']['tasks']} tasks of unseen scripts):")
    print(f"  NLL unconditional {u['nll_nats']:.1f} nats, 1-shot {k['1']['nll_nats']:.1f}, 5-shot {k['5']['nll_nats']:.1f}")
    print(f"  sample grids: {r['overview']} and {len(r['sample_grids'])} more in {args.out}/")
    print(f"  metrics: {args.out}/metrics.json   model: {args.out}/model")
    for name, z in r["zoo"].items():
        print(f"  the zoo's {name} on held-out {', '.join(t.split()[0] for t in z['held_out'])}: {z['path']}")
    return 0
