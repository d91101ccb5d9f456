"""Serve a page where anyone can personalise the given checkpoints from a few examples of their own.

A Gradio app (extra: pip install 'fewgen[serve]'): pick a checkpoint, upload a few images (or one
zip of them) or paste a few lines of text, choose the number of samples, the seed, the
fine-tuning steps and the sampler (images) or temperature and top-p (text), and see the support
with the samples, the support's NLL under the adapted model and the time it took; the adapted
checkpoint (the folder ``fewgen adapt`` writes) downloads as a zip. Binds to 127.0.0.1 unless
--host says otherwise; each checkpoint is loaded once; --concurrency requests run at once, the
others wait in the queue.

examples:
  fewgen serve                        # the whole zoo (fewgen zoo list)
  fewgen serve runs/omni runs/words
  fewgen serve runs/omni --port 8080 --concurrency 2
"""

from __future__ import annotations

import argparse

from .common import finite_float

HELP = "serve a browser page that personalises checkpoints from a few uploaded examples (Gradio)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..serve import Limits

    d = Limits()
    p.add_argument("checkpoints", nargs="*", metavar="CKPT",
                   help="checkpoint folders or zoo names to offer (image or text; default: the whole zoo)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--concurrency", type=int, default=1, help="requests run at once (default 1; others queue)")
    p.add_argument("--max-files", type=int, default=d.max_files, help=f"images per request (default {d.max_files})")
    p.add_argument("--max-mb", type=finite_float, default=d.max_bytes / 2**20,
                   help=f"uploads per request in MiB (default {d.max_bytes // 2**20})")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help=f"fine-tuning steps (default {d.max_steps})")


def run(args: argparse.Namespace) -> int:
    from ..errors import FewgenError
    from ..serve import Limits, serve

    if args.concurrency < 1:
        raise FewgenError("--concurrency must be at least 1")
    if not 0 < args.port < 65536:
        raise FewgenError(f"--port must be in 1..65535, got {args.port}")
    if args.max_files < 1 or args.max_mb <= 0 or args.max_steps < 0:
        raise FewgenError("--max-files and --max-mb must be positive, --max-steps non-negative")
    limits = Limits(max_files=args.max_files, max_bytes=int(args.max_mb * 2**20), max_steps=args.max_steps)
    from .. import zoo

    paths = args.checkpoints or zoo.names()
    if not paths:
        raise FewgenError("give checkpoint folders to serve (this installation has no zoo models)")
    serve(paths, args.host, args.port, args.concurrency, limits)
    return 0
