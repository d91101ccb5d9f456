"""Make zoo models: a training run -> a zoo folder, and a zoo model re-trained from its own config.

A zoo checkpoint stores the whole config it was trained with, including a fixed number of
steps (no time budget) and the seed, so :func:`build` trains it again with one thread and gets
the same weights bit for bit on CPU (the training loop is deterministic given the seed; see
:mod:`fewgen.training`). :func:`export` keeps the weights only (float16 where the card says the
held-out figures are unchanged), the facts a user needs (algorithm, data, steps) and the card.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from . import CARD, WEIGHTS, card, resolve

RUN = "run"  # the training run inside a build folder (resumable)
KEPT_INFO = ("algo", "data", "step", "best_val", "splits")


def stored_dtype(folder: Path) -> torch.dtype:
    """The floating dtype of a checkpoint's stored weights (from the safetensors header)."""
    from safetensors import safe_open

    with safe_open(str(folder / WEIGHTS), framework="pt") as f:
        floating = [f.get_slice(k).get_dtype() for k in f.keys()]
    return torch.float16 if "F16" in floating else torch.float32


def export(run: str | Path, dst: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """A training run (or any checkpoint) -> a zoo folder at ``dst``: its weights stored in
    ``dtype``, its config, and only the run facts in ``KEPT_INFO``."""
    from ..checkpoint import load, save

    ck = load(run)
    info = {k: ck.info[k] for k in KEPT_INFO if k in ck.info}
    return save(dst, ck.model, ck.config, info, ck.tensors, dtype=dtype)


def build(name: str, out: str | Path, data: str | None = None, resume: bool = False,
          progress: bool = True, root: Path | None = None) -> tuple[Path, bool]:
    """Re-train zoo model ``name`` into ``out`` (the run in ``out/run``, the zoo folder in ``out``)
    from the config its checkpoint stores (``data``: another spec of the same data, e.g.
    ``omniglot`` to download what ``omniglot:PATH`` read). Returns the folder and whether its
    weights are bit for bit the packaged ones."""
    from ..checkpoint import load, sha256_of
    from ..config import replace
    from ..training import train

    packaged = resolve(name, root)
    card(name, root)  # a one-line error for an unknown name
    cfg = load(packaged).config
    if data:
        cfg = replace(cfg, data={"spec": data})
    out = Path(out)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the zoo's models were trained on one thread: the same sums, the same bits
    try:
        train(cfg, out / RUN, resume=resume, progress=progress)
    finally:
        torch.set_num_threads(threads)
    folder = export(out / RUN, out, stored_dtype(packaged))
    shutil.copyfile(packaged / CARD, out / CARD)
    return folder, sha256_of(folder / WEIGHTS) == sha256_of(packaged / WEIGHTS)
