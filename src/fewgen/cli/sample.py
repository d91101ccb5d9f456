"""Generate new examples of a distribution given a few of its examples.

With a trained checkpoint, --support gives the examples (and --steps fine-tunes on them first);
an adapted checkpoint (``fewgen adapt``) already is that distribution: --support is optional
and only shown in the picture. Image models write a PNG grid (support in the first row); text
models write one sample a line (valid UTF-8) to --out, or to standard output when --out is
omitted or '-'; text support is .txt files (or folders of them), one example per line.

examples:
  fewgen sample runs/omni --support my_char/ --n 64 --out grid.png
  fewgen sample runs/omni --support a.png b.png c.png --n 32 --seed 3 --out grid.png
  fewgen sample runs/maml --support my_char/ --steps 5 --out grid.png
  fewgen sample runs/my_char --n 64 --out grid.png          # an adapted checkpoint
  fewgen sample runs/words --support examples.txt --n 20 --temperature 0.8 --out new.txt
  fewgen sample runs/words --support examples.txt more.txt --n 20       # to standard output
"""

from __future__ import annotations

import argparse

from ..errors import FewgenError
from .common import (adapt_train_config, add_adapt_args, add_diffusion_arguments, diffusion_eval_config,
                     finite_float, text_guidance_arg)

HELP = "sample from a checkpoint given support examples (PNG grid for images, lines for text)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="a checkpoint folder (trained or adapted)")
    p.add_argument("--support", nargs="*", default=[], metavar="FILE_OR_DIR",
                   help="support examples: image files / folders (images), text files (text)")
    p.add_argument("--steps", type=int, default=0, help="fine-tuning steps on the support first (default 0)")
    p.add_argument("--lr", type=finite_float, default=None, help="inner learning rate (default: the checkpoint's)")
    p.add_argument("--n", type=int, default=64, help="number of samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=finite_float, default=1.0,
                   help="text: sampling temperature (default 1; 0 = greedy)")
    p.add_argument("--top-p", type=finite_float, default=1.0,
                   help="text: nucleus sampling, draw from the smallest set of next bytes holding this much "
                        "probability (default 1 = off; 0.9 cuts stray characters)")
    p.add_argument("--latent", choices=("fusion", "prior"), default=None,
                   help="images: fusion = blends of the support's own drawings in latent space (follows the "
                        "support; the default, eval.latent) or prior = the model's p(z | support)")
    add_diffusion_arguments(p)
    p.add_argument("--out", help="output PNG (images, required) or text file (text; default or '-': stdout)")
    add_adapt_args(p)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..adaptation import adapter_for_checkpoint, empty_examples
    from ..checkpoint import load
    from ..support import read_support

    from .paths import out_file, picture_name

    if args.out not in (None, "-"):
        out_file(args.out, inputs=[args.checkpoint, *args.support])
    if args.n < 1:
        raise FewgenError("--n must be at least 1")
    if args.steps < 0:
        raise FewgenError("--steps must be non-negative")
    if args.temperature < 0:
        raise FewgenError("--temperature must be non-negative (0 = greedy)")
    if not 0 < args.top_p <= 1:
        raise FewgenError(f"--top-p must be in (0, 1], got {args.top_p}")
    ck = load(args.checkpoint)
    m = ck.model
    if m.modality not in ("image", "text"):
        raise FewgenError(f"{args.checkpoint}: sampling of '{m.modality}' models is not supported yet")
    if m.modality == "image":
        if args.out in (None, "-"):
            raise FewgenError("--out: give the output PNG file")
        picture_name(args.out)
    adapted = bool(ck.info.get("adapted"))
    what = "image files or folders" if m.modality == "image" else ".txt files, one example per line"
    if not args.support and not adapted:
        raise FewgenError(f"--support: give at least one example ({what}), or an adapted checkpoint")
    if args.support:
        support = read_support(args.support, m.modality, ck.config.data, getattr(m, "max_len", 0), args.checkpoint,
                               getattr(m, "channels", 1))
    else:
        support = empty_examples(m)
    # An adapted checkpoint ignores the support's content (its context is stored) unless --steps > 0.
    a = adapter_for_checkpoint(ck, lr=args.lr, seed=args.seed, train=adapt_train_config(ck.config, args))(
        support[None], torch.ones(1, len(support), dtype=torch.bool), args.steps)
    if m.modality == "text":
        ecfg = diffusion_eval_config(ck.config, args)  # validates --guidance's range
        return _write_text(a, args, len(support), text_guidance_arg(m, ecfg, args))
    return _write_images(a, args, support, diffusion_eval_config(ck.config, args, latent=args.latent))


def _write_text(a, args: argparse.Namespace, k: int, guidance: float) -> int:
    import sys

    from ..sample import sample_text, write_lines

    samples = sample_text(a, args.n, args.seed, args.temperature, args.top_p, guidance)[0]
    if args.out in (None, "-"):
        write_lines(sys.stdout, samples)
    else:
        path = write_lines(args.out, samples)
        print(f"wrote {path} ({args.n} samples, one a line, from {k} support examples)")
    return 0


def _write_images(a, args: argparse.Namespace, support, ecfg) -> int:
    from ..pictures import save_grid
    from ..sample import sample_images, write_sample_grid

    samples = sample_images(a, args.n, args.seed, ecfg=ecfg)[0]
    if len(support):
        path = write_sample_grid(args.out, support, samples)
        print(f"wrote {path} ({len(support)} support images in the first row, {args.n} samples below)")
    else:
        path = save_grid(args.out, [samples[i : i + 16] for i in range(0, len(samples), 16)])
        print(f"wrote {path} ({args.n} samples of the adapted checkpoint)")
    return 0
