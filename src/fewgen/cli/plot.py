"""Plot a run's training curves: train and meta-validation loss against steps and against time.

Reads RUN/metrics.jsonl, which ``fewgen train`` writes as it goes (a run still training can be
plotted). For live curves, train with --set train.tensorboard=true and run ``tensorboard --logdir RUN``.

examples:
  fewgen plot runs/omni                      # writes runs/omni/curves.png
  fewgen plot runs/omni --out omni_curves.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "plot a run's train/val loss against steps and time (PNG)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", metavar="RUN", help="a training run folder (fewgen train --out)")
    p.add_argument("--out", metavar="PNG", help="where to write the picture (default RUN/curves.png)")


def run(args: argparse.Namespace) -> int:
    from ..plot import plot_run
    from .paths import out_file

    if args.out:
        out_file(args.out, example="curves.png", inputs=[Path(args.folder) / "metrics.jsonl"], image=True)
    print(f"training curves: {plot_run(args.folder, args.out)}")
    return 0
