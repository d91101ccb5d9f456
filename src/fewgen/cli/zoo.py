"""The zoo of pretrained meta-generators shipped with fewgen: list them, read a model card,
re-train one. A zoo name works wherever a checkpoint folder does.

examples:
  fewgen zoo list
  fewgen zoo show omniglot-diffusion
  fewgen sample omniglot-diffusion --support my_char.png --n 16 --out grid.png
  fewgen zoo build omniglot-diffusion --out runs/rebuild --data omniglot   # bit for bit on CPU (hours)
"""

from __future__ import annotations

import argparse

from .common import add_overwrite_arg

HELP = "pretrained meta-generators: list, show a model card, re-train one"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="the zoo's models, a line each")
    s = sub.add_parser("show", help="a model's card: data, licence, budget, command, held-out figures")
    s.add_argument("name", metavar="NAME")
    b = sub.add_parser("build", help="re-train a zoo model from the config it stores (fixed steps, one thread)")
    b.add_argument("name", metavar="NAME")
    b.add_argument("--out", required=True, metavar="DIR", help="a new folder: the run in DIR/run, the model in DIR")
    b.add_argument("--data", metavar="SPEC", help="the same data from elsewhere (e.g. omniglot: download it)")
    b.add_argument("--resume", action="store_true", help="continue an interrupted build in --out")
    add_overwrite_arg(b)
    b.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from .. import zoo

    if args.zoo_command == "list":
        return _list(zoo.entries())
    if args.zoo_command == "show":
        print(zoo.card(args.name))
        return 0
    return _build(args)


def _list(entries) -> int:
    if not entries:
        print("the zoo is empty in this installation")
        return 0
    width = max(len(e.name) for e in entries)
    for e in entries:
        print(f"{e.name:<{width}}  {e.megabytes:5.1f} MB  {e.summary}")
    print("\nfewgen zoo show NAME: the model card; a NAME works wherever a checkpoint folder does")
    return 0


def _build(args: argparse.Namespace) -> int:
    from ..zoo import card
    from ..zoo.build import build
    from .paths import out_folder

    card(args.name)  # an unknown name: one line, before anything is written
    out_folder(args.out, overwrite=args.overwrite, resume=args.resume or None)
    folder, same = build(args.name, args.out, args.data, args.resume, progress=not args.quiet)
    verdict = "bit for bit the packaged weights" if same else "NOT the packaged weights (see the card's build notes)"
    print(f"built {args.name} in {folder}: {verdict}")
    return 0
