"""Generate new examples of a distribution given a few of its examples.

With a trained checkpoint, --support gives the examples (and --steps fine-tunes on them first);
an adapted checkpoint (``fewgen adapt``) already is that distribution: --support is optional
and only shown in the picture.

examples:
  fewgen sample runs/omni --support my_char/ --n 64 --out grid.png
  fewgen sample runs/omni --support a.png b.png c.png --n 32 --seed 3 --out grid.png
  fewgen sample runs/maml --support my_char/ --steps 5 --out grid.png
  fewgen sample runs/my_char --n 64 --out grid.png          # an adapted checkpoint
"""

from __future__ import annotations

import argparse

from ..errors import FewgenError

HELP = "sample from a checkpoint given support examples (PNG grid for images)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="a checkpoint folder (trained or adapted)")
    p.add_argument("--support", nargs="*", default=[], metavar="FILE_OR_DIR",
                   help="support examples: image files / folders (images), text files (text)")
    p.add_argument("--steps", type=int, default=0, help="fine-tuning steps on the support first (default 0)")
    p.add_argument("--lr", type=float, default=None, help="inner learning rate (default: the checkpoint's)")
    p.add_argument("--n", type=int, default=64, help="number of samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output PNG (images) or text file")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..adapt import adapter_for_checkpoint
    from ..checkpoint import load
    from ..pictures import save_grid
    from ..sample import read_support_images, sample_images, write_sample_grid

    if args.n < 1:
        raise FewgenError("--n must be at least 1")
    if args.steps < 0:
        raise FewgenError("--steps must be non-negative")
    ck = load(args.checkpoint)
    if ck.model.modality != "image":
        raise FewgenError(f"{args.checkpoint}: sampling of '{ck.model.modality}' models is not supported yet")
    adapted = bool(ck.extra.get("adapted"))
    if not args.support and not adapted:
        raise FewgenError("--support: give at least one image file or folder (or an adapted checkpoint)")
    m = ck.model
    support = (read_support_images(args.support, ck.config.data) if args.support
               else torch.zeros(0, m.channels, m.image_size, m.image_size))
    # An adapted checkpoint ignores the support's content (its context is stored) unless --steps > 0.
    a = adapter_for_checkpoint(ck, lr=args.lr, seed=args.seed)(
        support[None], torch.ones(1, len(support), dtype=torch.bool), args.steps)
    samples = sample_images(a, args.n, args.seed)[0]
    if len(support):
        path = write_sample_grid(args.out, support, samples)
        print(f"wrote {path} ({len(support)} support images in the first row, {args.n} samples below)")
    else:
        path = save_grid(args.out, [samples[i : i + 16] for i in range(0, len(samples), 16)])
        print(f"wrote {path} ({args.n} samples of the adapted checkpoint)")
    return 0
