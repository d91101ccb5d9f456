"""Output paths given on the command line, checked before any work starts.

A run's ``--out`` (train, adapt, bench, demo) is a folder: a new one, or a fewgen run folder
that is written again. A picture's or a listing's ``--out`` (sample, data show, plot; eval --json)
is a file. Either mistake is named in one line up front, not as ``File exists`` after a while.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import FewgenError

FOLDER_RULE = "must be a folder (a new one, or a fewgen run folder)"


def out_folder(arg: str, flag: str = "--out") -> Path:
    """``arg`` as an output folder; a FewgenError if it, or a folder above it, is a file."""
    path = Path(arg).expanduser()
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            what = "is a file" if p == path else f"is inside {p}, which is a file"
            raise FewgenError(f"{flag} {arg} {what}; {flag} {FOLDER_RULE}")
    return path


def out_file(arg: str, flag: str = "--out", example: str = "grid.png") -> Path:
    """``arg`` as an output file; a FewgenError if it is a folder or lies inside a file."""
    path = Path(arg).expanduser()
    if path.is_dir():
        raise FewgenError(f"{flag} {arg} is a folder; {flag} must be a file name, e.g. {Path(arg) / example}")
    for p in path.parents:
        if p.exists() and not p.is_dir():
            raise FewgenError(f"{flag} {arg} is inside {p}, which is a file; {flag} must be a file in a folder")
    return path
