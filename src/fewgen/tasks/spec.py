"""Data spec strings: one string names a task source everywhere on the CLI.

``omniglot`` | ``omniglot:PATH`` | ``glyphs`` | ``folder:PATH`` | ``words`` | ``words:LANG,...``
| ``text:PATH`` | ``toy`` | ``toy:NAME`` and mixtures ``SPEC+SPEC`` (see :mod:`fewgen.tasks.mix`).

Each source registers a loader ``(argument, DataConfig) -> TaskSet`` in :data:`SOURCES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..config import DataConfig
from ..errors import DataError
from .base import TaskSet

Loader = Callable[[str, DataConfig], TaskSet]
SOURCES: dict[str, tuple[Loader, str]] = {}  # name -> (loader, one-line help)


def register(name: str, help: str) -> Callable[[Loader], Loader]:
    """Decorator: register a data source under ``name``."""

    def deco(fn: Loader) -> Loader:
        SOURCES[name] = (fn, help)
        return fn

    return deco


def user_path(arg: str, source: str) -> Path:
    """``arg`` as a path (``~`` expanded); a path that cannot be one is a DataError."""
    if "\0" in arg:
        raise DataError(f"{source}: the path {arg!r} contains a NUL byte")
    try:
        return Path(arg).expanduser()
    except RuntimeError as e:  # ~user of an unknown user
        raise DataError(f"{source}: cannot expand the path '{arg}' ({e})") from None


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``name:argument`` into its parts, validating the name."""
    _ensure_registered()
    if not isinstance(spec, str) or not spec.strip():
        raise DataError("empty data spec; valid sources: " + ", ".join(sorted(SOURCES)))
    name, _, arg = spec.strip().partition(":")
    if name not in SOURCES:
        raise DataError(f"unknown data spec '{spec}'; valid sources: " + ", ".join(sorted(SOURCES)))
    return name, arg


def load_tasks(spec: str, cfg: DataConfig | None = None) -> TaskSet:
    """Load every task of a data spec (all splits)."""
    cfg = cfg or DataConfig()
    if "+" in spec:  # a mixture of sources
        from .mix import load_mixture

        return load_mixture(spec, cfg)
    name, arg = parse_spec(spec)
    ts = SOURCES[name][0](arg, cfg)
    ts.source = spec
    return ts


def load_split(spec: str, cfg: DataConfig, split: str) -> TaskSet:
    """Load one split (``train``, ``val``, ``test`` or ``all``) of a data spec."""
    ts = load_tasks(spec, cfg)
    if split == "all":
        return ts
    if split not in ("train", "val", "test"):
        raise DataError(f"unknown split '{split}'; use train, val, test or all")
    return ts.split(cfg.split_fractions, cfg.split_seed, cfg.split_file)[split]


def _ensure_registered() -> None:
    # Importing the source modules registers them (kept lazy: importing fewgen stays cheap).
    from . import images, toy  # noqa: F401
    try:
        from . import text  # noqa: F401
    except ImportError:  # pragma: no cover - text sources are optional until installed
        pass
