"""Seconds to draw 64 samples from the image diffusion model, for a few step counts and guidance.

The model is a checkpoint's (``--ckpt``) or a fresh one at the default sizes (speed does not
depend on the weights). One task, 5 support shots of 28x28; guidance 0 and 1 need one U-Net pass
per step, any other value two (batched together). The default is ``eval.sample_steps`` at
``eval.guidance``. Median of ``--repeats`` timed runs after one warm-up.

    PYTHONPATH=src python benchmarks/diffusion_sample_speed.py [--threads 2] [--ckpt runs/omni_diff]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from fewgen.config import Config, EvalConfig, replace
from fewgen.models import build_model


def seconds(fn, repeats: int) -> float:
    """The median wall time of ``fn()`` over ``repeats`` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ckpt", help="a trained image_diffusion checkpoint (default: a fresh default-size model)")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.ckpt:
        from fewgen.checkpoint import load

        model = load(args.ckpt).model
    else:
        cfg = replace(Config(), model={"family": "image_diffusion"})
        model = build_model(cfg.model, {"example_shape": [1, 28, 28], "modality": "image"})
    model.eval()
    S = model.image_size
    support = (torch.rand(1, 5, model.channels, S, S, generator=torch.Generator().manual_seed(0)) > 0.8).float()
    with torch.no_grad():
        context = model.context(support, torch.ones(1, 5, dtype=torch.bool))
    d = EvalConfig()
    print(f"threads={args.threads} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}), "
          f"load average {os.getloadavg()[0]:.1f}, hidden={model.hidden}, n={args.n}")
    print("| steps | guidance | sampler | seconds for", args.n, "samples |")
    print("|---|---|---|---|")
    for steps, guidance, sampler in [(d.sample_steps, d.guidance, d.sampler), (d.sample_steps, 2.0, "ddim"),
                                     (10, d.guidance, "ddim"), (50, d.guidance, "ddim"),
                                     (d.sample_steps, d.guidance, "ddpm")]:
        def draw() -> None:
            with torch.no_grad():
                model.sample(args.n, context, torch.Generator().manual_seed(0), guidance=guidance, steps=steps,
                             sampler=sampler)

        mark = " (default)" if (steps, guidance, sampler) == (d.sample_steps, d.guidance, d.sampler) else ""
        print(f"| {steps} | {guidance:g} | {sampler} | {seconds(draw, args.repeats):.2f}{mark} |")


if __name__ == "__main__":
    main()
