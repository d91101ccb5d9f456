"""Inspect task data.

examples:
  fewgen data show glyphs --out tasks.png
  fewgen data show omniglot:../shared/data/omniglot --split test --tasks 10 --out omni.png
  fewgen data show folder:./my_images --out t.png --set data.strict=true   # unreadable files are errors
  fewgen data show words --out -                    # text: a few tasks and examples, one task a line
  fewgen data show text:./my_texts --tasks 3 --out tasks.txt
  fewgen data list                                  # the data sources
"""

from __future__ import annotations

import argparse

from .common import add_config_args, base_config, with_data

HELP = "show a grid of tasks of a data source, or list the sources"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    s = sub.add_parser("show", help="a PNG grid of a few tasks and their examples")
    s.add_argument("spec", metavar="SPEC")
    s.add_argument("--out", required=True, help="output PNG (images); text file or '-' for stdout (text)")
    s.add_argument("--split", default="all", choices=["train", "val", "test", "all"])
    s.add_argument("--tasks", type=int, default=8)
    s.add_argument("--examples", type=int, default=12)
    s.add_argument("--seed", type=int, default=0)
    add_config_args(s)  # data.* keys: image_size, binarize, strict, split_*, cache_dir
    sub.add_parser("list", help="the available data sources")


def run(args: argparse.Namespace) -> int:
    from ..errors import FewgenError
    from ..tasks.spec import load_split, source_lines

    if args.data_command == "list":
        for line in source_lines():
            print(f"  {line}")
        return 0
    import torch

    from ..pictures import tasks_picture
    from .paths import out_file

    if args.out != "-":
        out_file(args.out, example="tasks.png")

    cfg = with_data(base_config(args), args.spec).data
    ts = load_split(args.spec, cfg, args.split)
    if len(ts) == 0:
        raise FewgenError(f"{args.spec}: split '{args.split}' has no tasks")
    if ts.modality == "text":
        return _show_text(ts, args)
    if ts.modality != "image":
        for i in torch.randperm(len(ts), generator=torch.Generator().manual_seed(args.seed))[: args.tasks].tolist():
            print(ts.names[i], "|", ", ".join(ts.meta["decode"](ts.examples(i)[: args.examples])) if "decode" in ts.meta else "")
        return 0
    ids = torch.randperm(len(ts), generator=torch.Generator().manual_seed(args.seed))[: args.tasks].tolist()
    path = tasks_picture(args.out, [ts.examples(i) for i in ids], [ts.names[i] for i in ids], args.examples)
    print(f"wrote {path}: {len(ids)} of {len(ts)} tasks ({len(set(ts.groups))} groups), "
          f"{int(ts.counts.sum())} examples of shape {tuple(ts.example_shape)}")
    return 0


def _show_text(ts, args: argparse.Namespace) -> int:
    """Text tasks: one line per task, ``name (N examples): ex1 | ex2 | ...`` (random examples, seeded)."""
    import sys

    import torch

    from ..sample import write_lines
    from ..tasks.base import episode_generator
    from ..tasks.text import decode_batch

    g = torch.Generator().manual_seed(args.seed)
    lines = []
    for i in torch.randperm(len(ts), generator=g)[: args.tasks].tolist():
        ex = ts.examples(i)
        pick = torch.randperm(len(ex), generator=episode_generator(args.seed, i))[: args.examples]
        lines.append(f"{ts.names[i]} ({len(ex)} examples): " + " | ".join(decode_batch(ex[pick])))
    summary = f"{min(args.tasks, len(ts))} of {len(ts)} tasks ({len(set(ts.groups))} groups), {int(ts.counts.sum())} examples"
    if args.out == "-":
        write_lines(sys.stdout, lines + [summary])
    else:
        print(f"wrote {write_lines(args.out, lines)}: {summary}")
    return 0
