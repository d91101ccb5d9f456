"""A data source: the module and loader that read it, and the facts ``fewgen data list`` shows.

A source module (``tasks/images.py``, ``tasks/text.py``, ``tasks/toy.py``) defines loaders
``(argument, DataConfig) -> TaskSet``; the table :data:`fewgen.tasks.spec.SOURCES` names them,
and a source's module is imported only when the source is loaded. This module is a leaf of
``tasks/``: the source modules import :func:`user_path` from here, never the table.
"""

from __future__ import annotations

import dataclasses
from importlib import import_module
from pathlib import Path
from typing import Callable, NamedTuple

from ..config import DataConfig
from ..errors import DataError
from .base import TaskSet

Loader = Callable[[str, DataConfig], TaskSet]


class Source(NamedTuple):
    """A data source: where its loader is, and the three facts ``fewgen data list`` shows."""

    module: str  # the module of fewgen.tasks that reads it, e.g. "images"
    loader: str  # its loader there, e.g. "load_omniglot"
    syntax: str  # the spec's forms, e.g. "omniglot | omniglot:PATH"
    about: str  # what a task is, in a few words
    example: str  # one spec that works as written (or with the user's own path)
    image_size: int = 28  # images' side when data.image_size is 0 (the default): the source's own

    def load(self, arg: str, cfg: DataConfig) -> TaskSet:
        """Every task of this source for the spec argument ``arg`` (its module imported now), its
        images ``data.image_size`` on a side, or the source's own :attr:`image_size` where that is 0."""
        fn: Loader = getattr(import_module(f"{__package__}.{self.module}"), self.loader)
        return fn(arg, cfg if cfg.image_size else dataclasses.replace(cfg, image_size=self.image_size))


def user_path(arg: str, source: str) -> Path:
    """``arg`` as a path (``~`` expanded); a path that cannot be one is a DataError."""
    if "\0" in arg:
        raise DataError(f"{source}: the path {arg!r} contains a NUL byte")
    try:
        return Path(arg).expanduser()
    except RuntimeError as e:  # ~user of an unknown user
        raise DataError(f"{source}: cannot expand the path '{arg}' ({e})") from None
