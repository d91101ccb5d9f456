"""Inspect task data.

examples:
  fewgen data show glyphs --out tasks.png
  fewgen data show omniglot:../shared/data/omniglot --split test --tasks 10 --out omni.png
  fewgen data show folder:./my_images --out t.png --set data.strict=true   # unreadable files are errors
  fewgen data show words --out -                    # text: a few tasks and examples, one task a line
  fewgen data show text:./my_texts --tasks 3 --out tasks.txt
  fewgen data show words --out - --set data.task_augment=letters@1   # tasks as meta-training sees them
  fewgen data show omniglot --out aug.png --augment                 # the default augmentation (rot90, flip)
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
    s.add_argument("--augment", action="store_true",
                   help="draw the tasks as meta-training sees them, transformed by data.task_augment (implied by "
                        "--set data.task_augment=...)")
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
    from .paths import out_file, picture_name, spec_paths

    if args.out != "-":
        out_file(args.out, example="tasks.png", inputs=spec_paths(args.spec))

    cfg = with_data(base_config(args), args.spec).data
    ts = load_split(args.spec, cfg, args.split)
    if len(ts) == 0:
        raise FewgenError(f"{args.spec}: split '{args.split}' has no tasks")
    if ts.modality == "image":  # a picture: a file name Pillow can write
        if args.out == "-":
            raise FewgenError("--out -: a picture cannot go to standard output; give a file, e.g. tasks.png")
        picture_name(args.out)
    if ts.modality not in ("text", "image"):
        for i in torch.randperm(len(ts), generator=torch.Generator().manual_seed(args.seed))[: args.tasks].tolist():
            print(ts.names[i], "|", ", ".join(ts.meta["decode"](ts.examples(i)[: args.examples])) if "decode" in ts.meta else "")
        return 0
    augment = args.augment or any(o.strip().startswith("data.task_augment=") for o in args.set)
    names, examples = _pick(ts, args, cfg if augment else None)
    if ts.modality == "text":
        return _show_text(ts, names, examples, args)
    path = tasks_picture(args.out, examples, names, args.examples)
    print(f"wrote {path}: {len(names)} of {len(ts)} tasks ({len(set(ts.groups))} groups), "
          f"{int(ts.counts.sum())} examples of shape {tuple(ts.example_shape)}"
          + (f"; augmented by {', '.join(_transforms(cfg, ts))}" if augment else ""))
    return 0


def _transforms(cfg, ts) -> tuple[str, ...]:
    from ..tasks.augment import resolve

    return resolve(cfg.task_augment, ts.modality) if cfg.augment else ()


def _pick(ts, args: argparse.Namespace, cfg) -> tuple[list[str], list]:
    """``--tasks`` seeded tasks and up to ``--examples`` seeded examples of each; with a data
    config ``cfg``, transformed as meta-training would (its ``task_augment``, seeded by --seed)."""
    import torch

    from ..tasks.augment import task_augmenter
    from ..tasks.base import Episode, episode_generator

    ids = torch.randperm(len(ts), generator=torch.Generator().manual_seed(args.seed))[: args.tasks].tolist()
    picks = [ts.examples(i)[torch.randperm(int(ts.counts[i]), generator=episode_generator(args.seed, i))[: args.examples]]
             for i in ids]
    names = [ts.names[i] for i in ids]
    fn = task_augmenter(cfg, ts.modality) if cfg is not None else None
    if fn is None:
        return names, picks
    n = min(len(p) for p in picks)  # an episode holds the same number of examples per task
    ep = Episode(torch.stack([p[:n] for p in picks]), torch.ones(len(ids), n, dtype=torch.bool),
                 torch.stack([p[:0] for p in picks]), tuple(names))
    ep = fn(ep, episode_generator(args.seed + 1, 0))
    return list(ep.names), list(ep.support)


def _show_text(ts, names: list[str], examples: list, args: argparse.Namespace) -> int:
    """Text tasks: one line per task, ``name (N examples): ex1 | ex2 | ...`` (random examples, seeded)."""
    import sys

    from ..sample import write_lines
    from ..models.bytes import decode_batch

    counts = dict(zip(ts.names, ts.counts.tolist()))
    lines = [f"{name} ({counts.get(name.split('+')[0], len(ex))} examples): " + " | ".join(decode_batch(ex))
             for name, ex in zip(names, examples)]
    summary = f"{min(args.tasks, len(ts))} of {len(ts)} tasks ({len(set(ts.groups))} groups), {int(ts.counts.sum())} examples"
    if args.out == "-":
        write_lines(sys.stdout, lines + [summary])
    else:
        print(f"wrote {write_lines(args.out, lines)}: {summary}")
    return 0
