"""Output paths given on the command line, checked before any work starts.

A run's ``--out`` (train, adapt, bench, demo, export-hf) is a folder; a picture's or a
listing's ``--out`` (sample, data show, plot; eval --json) is a file. Nothing is lost:

- a folder ``--out`` must be new or empty: one that holds anything (a checkpoint, a run, a
  Hugging Face model, other files) is refused unless ``--overwrite`` says to replace it
  (``fewgen train --resume`` continues its own run);
- no ``--out`` may be the command's own input (its checkpoint, support files, data folder) or
  hold it, with or without ``--overwrite``;
- a file ``--out`` may replace a picture or listing, never a checkpoint's own files.

Every refusal is one line, exit status 2, before anything is read or written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..errors import FewgenError

FOLDER_RULE = "must be a folder (a new or empty one)"
# The files that make a folder a checkpoint or a run: never the target of a file --out.
CHECKPOINT_FILES = ("config.json", "model.safetensors", "train_state.pt", "resolved_config.json", "metrics.jsonl",
                    "tokenizer.json", "tokenizer_config.json")


def spec_paths(spec: str | None) -> list[Path]:
    """The existing files and folders a data spec reads (``folder:PATH``, ``text:PATH``, mixes with ``+``)."""
    found = []
    for part in (spec or "").split("+"):
        arg = part.split(":", 1)[1] if ":" in part else ""
        if arg and Path(arg).expanduser().exists():
            found.append(Path(arg).expanduser())
    return found


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path.expanduser()))


def _input_clash(path: Path, inputs: Iterable[str | Path]) -> Path | None:
    """The first input that ``path`` is, or lies inside ``path`` (None when there is none)."""
    target = _resolved(path)
    for given in inputs:
        src = _resolved(Path(given))
        if src == target or target in src.parents:
            return Path(given)
    return None


def folder_contents(path: Path) -> str | None:
    """What an existing folder holds, in words ("a fewgen checkpoint", "3 files", ...); None if
    it does not exist or is empty."""
    if not path.is_dir():
        return None
    entries = list(path.iterdir())
    if not entries:
        return None
    names = {e.name for e in entries}
    if "train_state.pt" in names or "resolved_config.json" in names:
        return "a fewgen training run"
    if "config.json" in names and "model.safetensors" in names:
        try:
            fewgen = '"fewgen-checkpoint"' in (path / "config.json").read_text(encoding="utf-8", errors="replace")
        except OSError:
            fewgen = False
        return "a fewgen checkpoint" if fewgen else "a model folder"
    return f"{len(entries)} file(s) or folder(s), e.g. {sorted(names)[0]}"


def image_suffixes() -> set[str]:
    """The file suffixes of the picture formats Pillow can write (.png, .jpg, ...)."""
    from PIL import Image

    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}


def picture_name(arg: str, flag: str = "--out") -> None:
    """A FewgenError unless ``arg`` ends in the suffix of a picture format Pillow writes (for an
    output whose kind is known only once the checkpoint or data is read: sample, data show)."""
    path = Path(arg).expanduser()
    if path.suffix.lower() not in image_suffixes():
        raise FewgenError(f"{flag} {arg}: not a picture file name; end it in .png (or .jpg, .webp, ...), "
                          f"e.g. {path.with_suffix('.png')}")


def out_folder(arg: str, flag: str = "--out", inputs: Iterable[str | Path] = (), overwrite: bool = False,
               resume: bool | None = None) -> Path:
    """``arg`` as a command's output folder, checked before any work (see the module docstring).

    A FewgenError when it is, or lies inside, a file; when it is (or holds) one of ``inputs``;
    or when it already holds something and neither ``overwrite`` nor ``resume`` (train's own
    run, checked by train) allows writing there. ``resume`` None: the command cannot resume.
    """
    path = Path(arg).expanduser()
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            what = "is a file" if p == path else f"is inside {p}, which is a file"
            raise FewgenError(f"{flag} {arg} {what}; {flag} {FOLDER_RULE}")
    clash = _input_clash(path, inputs)
    if clash is not None:
        what = "is" if _resolved(clash) == _resolved(path) else "holds"
        raise FewgenError(f"{flag} {arg} {what} this command's input {clash}; nothing was written: "
                          f"give a new folder for the output")
    held = None if resume or overwrite else folder_contents(path)
    if held:
        more = ", --resume to continue it" if held == "a fewgen training run" and resume is False else ""
        raise FewgenError(f"{flag} {arg} already holds {held}; nothing was written: give a new folder{more}, "
                          f"or --overwrite to replace it")
    return path


def out_file(arg: str, flag: str = "--out", example: str = "grid.png", inputs: Iterable[str | Path] = (),
             image: bool = False) -> Path:
    """``arg`` as an output file: a FewgenError if it is a folder, lies inside a file, is one of
    the command's ``inputs``, is a file of a checkpoint or model folder (config.json, weights, ...),
    or (``image``) has no suffix of a picture format Pillow writes."""
    path = Path(arg).expanduser()
    if path.is_dir():
        raise FewgenError(f"{flag} {arg} is a folder; {flag} must be a file name, e.g. {Path(arg) / example}")
    for p in path.parents:
        if p.exists() and not p.is_dir():
            raise FewgenError(f"{flag} {arg} is inside {p}, which is a file; {flag} must be a file in a folder")
    clash = _input_clash(path, inputs)
    if clash is not None:
        raise FewgenError(f"{flag} {arg} is this command's input {clash}; nothing was written: give a new file name")
    if image:
        picture_name(arg, flag)
    if path.exists() and (path.name in CHECKPOINT_FILES or path.suffix == ".safetensors") \
            and (path.parent / "config.json").is_file():
        raise FewgenError(f"{flag} {arg} is a file of the model folder {path.parent}; nothing was written: "
                          f"give a new file name, e.g. {path.parent / example}")
    return path
