"""Pre-train a small GPT-2 on the meta-train tasks' text and save it as a Hugging Face folder.

The folder (config.json, model.safetensors, a byte-level BPE tokenizer) is a real model to
personalise offline with --set model.family=hf_causal_lm --set model.extra.path=FOLDER; any
local GPT-2 / Llama / Qwen folder with safetensors weights works the same way.

examples:
  fewgen export-hf --data words --out runs/hf_words --max-seconds 480
  fewgen train --data words --algo reptile --set model.family=hf_causal_lm \\
      --set model.extra.path=runs/hf_words --set model.extra.condition=lora --out runs/hf_reptile
"""

from __future__ import annotations

import argparse

from .common import add_overwrite_arg, finite_float

HELP = "pre-train a small GPT-2 on the meta-train text and save it as a Hugging Face model folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="words", metavar="SPEC", help="text data spec (default words)")
    p.add_argument("--out", required=True, metavar="FOLDER")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--max-seconds", type=finite_float, default=0.0, help="wall-clock budget (0 = none)")
    p.add_argument("--vocab", type=int, default=512, help="BPE vocabulary size (257 = bytes only)")
    p.add_argument("--width", type=int, default=128, help="embedding width (n_embd)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    add_overwrite_arg(p)


def run(args: argparse.Namespace) -> int:
    from ..config import DataConfig
    from ..errors import ConfigError
    from ..models.hf_causal_lm import _require_hf
    from ..tasks.spec import load_split
    from .paths import out_folder, spec_paths

    out_folder(args.out, inputs=spec_paths(args.data), overwrite=args.overwrite)
    _require_hf()
    if min(args.steps, args.vocab, args.width, args.layers) < 1 or args.width % 4:
        raise ConfigError("--steps, --vocab, --layers must be positive and --width a positive multiple of 4")
    from ..hf_export import ExportConfig, export_hf

    tasks = load_split(args.data, DataConfig(spec=args.data), "train")
    if tasks.modality != "text":
        raise ConfigError(f"export-hf needs text data; {args.data} is {tasks.modality}")
    cfg = ExportConfig(vocab_size=args.vocab, n_embd=args.width, n_layer=args.layers, steps=args.steps,
                       max_seconds=args.max_seconds, seed=args.seed)
    print(f"Hugging Face model folder: {export_hf(tasks, args.out, cfg)} ({len(tasks)} meta-train tasks)")
    return 0
