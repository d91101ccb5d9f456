"""Generate new examples of a distribution given a few of its examples.

examples:
  fewgen sample runs/omni --support my_char/ --n 64 --out grid.png
  fewgen sample runs/omni --support a.png b.png c.png --n 32 --seed 3 --out grid.png
"""

from __future__ import annotations

import argparse

from ..errors import FewgenError

HELP = "sample from a checkpoint given support examples (PNG grid for images)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="a checkpoint folder (trained or adapted)")
    p.add_argument("--support", nargs="*", default=[], metavar="FILE_OR_DIR",
                   help="support examples: image files / folders (images), text files (text)")
    p.add_argument("--n", type=int, default=64, help="number of samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output PNG (images) or text file")


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import load
    from ..sample import read_support_images, sample_images, write_sample_grid
    from ..adapt import adapt

    if args.n < 1:
        raise FewgenError("--n must be at least 1")
    ck = load(args.checkpoint)
    if ck.model.modality != "image":
        raise FewgenError(f"{args.checkpoint}: sampling of '{ck.model.modality}' models is not supported yet")
    if not args.support:
        raise FewgenError("--support: give at least one image file or folder")
    support = read_support_images(args.support, ck.config.data)
    a = adapt(ck.model, support[None])
    samples = sample_images(a, args.n, args.seed)[0]
    path = write_sample_grid(args.out, support, samples)
    print(f"wrote {path} ({len(support)} support images in the first row, {args.n} samples below)")
    return 0
