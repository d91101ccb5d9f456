"""Adapt a meta-trained generator to one new distribution and save it as its own checkpoint.

The support examples are encoded (conditional models: amortized, hybrid) and/or the weights are
fine-tuned for --steps SGD steps on their loss (--steps 0: amortized adaptation only). The
result is a self-contained, personalised checkpoint: the adapted weights, the stored context
and ``"adapted": true``; ``fewgen sample`` and ``fewgen eval`` accept it without --support.

examples:
  fewgen adapt runs/omni --support my_char/ --out runs/my_char                 # amortized
  fewgen adapt runs/maml --support a.png b.png c.png --steps 10 --out runs/abc   # fine-tuned
  fewgen sample runs/abc --n 64 --out grid.png
  fewgen adapt runs/maml_film --support a.png --steps 10 --adapt-params film --set train.inner_select=heldout --out runs/a
"""

from __future__ import annotations

import argparse

from .common import adapt_train_config, add_adapt_args, add_overwrite_arg, finite_float

HELP = "adapt a checkpoint to a few support examples; write an adapted checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="a checkpoint folder (trained, or already adapted)")
    p.add_argument("--support", nargs="+", required=True, metavar="FILE_OR_DIR",
                   help="support examples: image files / folders (images), text files (text)")
    p.add_argument("--steps", type=int, default=0, help="fine-tuning steps on the support (default 0)")
    p.add_argument("--lr", type=finite_float, default=None, help="inner learning rate (default: the checkpoint's)")
    p.add_argument("--algo", help="adapt as this algorithm would (default: the checkpoint's; 'scratch' = fresh init)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="DIR", help="folder of the adapted checkpoint")
    add_overwrite_arg(p)
    add_adapt_args(p)


def run(args: argparse.Namespace) -> int:
    from ..adaptation import adapt_checkpoint
    from ..checkpoint import load
    from ..errors import FewgenError
    from .paths import out_folder

    out_folder(args.out, inputs=[args.checkpoint, *args.support], overwrite=args.overwrite)
    if args.steps < 0:
        raise FewgenError("--steps must be non-negative")
    ck = load(args.checkpoint)
    out, k = adapt_checkpoint(ck, args.support, args.out, steps=args.steps, lr=args.lr, algo=args.algo,
                              seed=args.seed, train=adapt_train_config(ck.config, args))
    print(f"adapted {args.checkpoint} to {k} support examples with {args.steps} fine-tuning steps; "
          f"checkpoint: {out}")
    return 0
