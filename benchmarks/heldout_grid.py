"""A picture of held-out tasks: for each, its K support images, then samples drawn from them.

The tasks are seeded draws from the test split of the checkpoint's own data (new concepts of the
same kind as its training tasks), the support K seeded examples of each; sampling uses the
checkpoint's eval settings (``fewgen.zoo.tour``, what ``fewgen demo`` shows for the zoo):

    PYTHONPATH=src python benchmarks/heldout_grid.py runs/icons/diffusion --shots 5 --tasks 6 --out docs/img/icons_heldout.png
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from fewgen.checkpoint import load
from fewgen.sample import sample_images
from fewgen.zoo.tour import adapted_held_out, tasks_grid


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--tasks", type=int, default=6)
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guidance", type=float, help="diffusion: classifier-free guidance (default: the checkpoint's)")
    p.add_argument("--sample-steps", type=int, help="diffusion: sampler steps (default: the checkpoint's)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    ck = load(args.checkpoint)
    held = adapted_held_out(ck, args.seed, args.tasks, args.shots)
    if held is None:
        raise SystemExit(f"{args.checkpoint}: its data ({ck.config.data.spec}) is not on this machine")
    names, support, adapted = held
    ecfg = ck.config.eval
    if args.guidance is not None:
        ecfg = dataclasses.replace(ecfg, guidance=args.guidance)
    if args.sample_steps is not None:
        ecfg = dataclasses.replace(ecfg, sample_steps=args.sample_steps)
    samples = sample_images(adapted, args.samples, args.seed, ecfg=ecfg)
    path = tasks_grid(Path(args.out), names, support, samples)
    print(f"wrote {path}: {len(names)} held-out tasks ({', '.join(names)}), {args.shots} shots, {args.samples} samples each")


if __name__ == "__main__":
    main()
