"""A user's support files -> the support tensor (K, *X), prepared like the model's data.

What ``fewgen adapt`` and ``fewgen sample --support`` read: image files and/or folders of them
(resized and binarised as the training data were), ``.txt`` files (or folders of them) with one
example per line for text models, or tables of numbers (one example a row) for toy models.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Collection, Sequence

import torch
from torch import Tensor

from .config import DataConfig
from .errors import DataError


def require_examples(count: int, source: str) -> None:
    """The one check for empty data: every command and the web page refuse a support (or a
    task) with no examples with this message, naming ``source`` (the files, or "the pasted text")."""
    if count == 0:
        raise DataError(f"{source}: no examples (empty, or only blank lines); give at least one example")


def a_model(modality: str) -> str:
    """``an image model``, ``a text model``: how error messages name a model's kind."""
    return f"{'an' if modality[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {modality} model"


def check_kind(paths: Sequence[str | Path], modality: str, model: str) -> None:
    """A one-line error when a support file given by name is of the other modality than the
    model's (a .txt file for an image model, an image for a text model)."""
    from .tasks.images import IMAGE_SUFFIXES

    other = {"image": ((".txt",), "a text file", "give image files or folders"),
             "text": (tuple(IMAGE_SUFFIXES), "an image", "give .txt files, one example a line")}
    if modality not in other:
        return
    suffixes, kind, wanted = other[modality]
    for p in map(Path, paths):
        if p.is_file() and p.suffix.lower() in suffixes:
            raise DataError(f"{p} is {kind}, but {model} is {a_model(modality)}: {wanted}")


def support_files(paths: Sequence[str | Path], suffixes: Collection[str], what: str, reader: str = "") -> list[Path]:
    """Files given directly, plus the files with one of ``suffixes`` (case-insensitive) inside
    given folders (sorted); a path that does not exist, or no file at all, is a :class:`DataError`
    (``what`` names the kind of file in the message, ``reader`` what reads them)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            present = sorted(f for f in p.iterdir() if f.is_file())
            found = [f for f in present if f.suffix.lower() in suffixes]
            if not found:
                held = f" (it holds {present[0].name}{' and more' if len(present) > 1 else ''})" if present else ""
                raise DataError(f"{p}: folder has no {what} files{held}{'; ' + reader if reader else ''}")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    if not files:
        raise DataError(f"{', '.join(map(str, paths))}: no {what} support files")
    return files


def read_support_images(paths: Sequence[str | Path], cfg: DataConfig, reader: str = "", channels: int = 1) -> Tensor:
    """Image files and/or folders of images -> (K, C, S, S), prepared like the training data
    (``channels`` = C: 1 grey, 3 colour, as the model was trained)."""
    import numpy as np

    from .tasks.images import IMAGE_SUFFIXES, read_image

    files = support_files(paths, IMAGE_SUFFIXES, "image", reader)
    return torch.from_numpy(np.stack([read_image(f, cfg.image_size, cfg.binarize, str(f), channels) for f in files]))


def read_support(paths: Sequence[str | Path], modality: str, cfg: DataConfig, max_len: int = 0,
                 model: str = "the checkpoint", channels: int = 1) -> Tensor:
    """A user's support files for a model of ``modality`` -> (K, *X), prepared like its data.

    Images: image files and/or folders of them, read with the model's ``channels`` (1 grey, 3 colour). Text: ``.txt`` files (or folders of them), one
    example per line, byte-encoded to ``max_len``. Toy: text files of numbers, one example per row.
    A file of the other modality, or files with no example at all, are one-line errors
    (``model`` names the checkpoint in them).
    """
    check_kind(paths, modality, model)
    reader = f"{model} is {a_model(modality)}"
    if modality == "image":
        return read_support_images(paths, cfg, reader, channels)
    if modality not in ("text", "toy"):
        raise DataError(f"reading support files of '{modality}' models is not supported")
    files = support_files(paths, (".txt",), ".txt", reader)
    if modality == "text":
        support = read_support_text(files, max_len)
        require_examples(len(support), ", ".join(map(str, paths)))
        return support
    import numpy as np

    try:
        rows = [np.atleast_2d(np.loadtxt(f, dtype=np.float32, delimiter=None, ndmin=2)) for f in files]
    except ValueError as e:
        raise DataError(f"support: not a table of numbers ({e})") from None
    support = torch.from_numpy(np.concatenate(rows))
    require_examples(len(support), ", ".join(map(str, paths)))
    return support



def read_support_text(files: Sequence[Path], max_len: int) -> Tensor:
    """Support lines of ``.txt`` files -> (K, max_len) ids. A line longer than the model's
    ``max_len - 1`` bytes is cut between characters, with one warning naming the first such
    file and line (and how many more there were)."""
    from .models.bytes import encode_batch
    from .tasks.text import read_numbered_lines, truncate_utf8

    lines, cut = [], []
    for f in files:
        for number, text in read_numbered_lines(f):
            short = truncate_utf8(text, max_len - 1)
            if short != text:
                cut.append(f"{f}:{number}")
            lines.append(short)
    if cut:
        more = f" (and {len(cut) - 1} more line(s))" if len(cut) > 1 else ""
        warnings.warn(f"support line {cut[0]} is longer than the model's {max_len - 1} bytes; truncated{more}",
                      stacklevel=2)
    try:
        return encode_batch(lines, max_len)
    except ValueError as e:
        raise DataError(f"support: {e}") from None
