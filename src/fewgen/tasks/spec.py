"""Data spec strings: one string names a task source everywhere on the CLI.

``omniglot`` | ``omniglot:PATH`` | ``glyphs`` | ``folder:PATH`` | ``words`` | ``words:LANG,...``
| ``text:PATH`` | ``toy`` | ``toy:NAME`` and mixtures ``SPEC+SPEC`` (see :mod:`fewgen.tasks.mix`).

Each source registers a loader ``(argument, DataConfig) -> TaskSet`` in :data:`SOURCES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

from ..config import DataConfig
from ..errors import DataError
from .base import TaskSet

Loader = Callable[[str, DataConfig], TaskSet]


class Source(NamedTuple):
    """A registered data source: its loader and the three facts ``fewgen data list`` shows."""

    load: Loader
    syntax: str  # the spec's forms, e.g. "omniglot | omniglot:PATH"
    about: str  # what a task is, in a few words
    example: str  # one spec that works as written (or with the user's own path)


SOURCES: dict[str, Source] = {}  # name -> source


def register(name: str, syntax: str, about: str, example: str) -> Callable[[Loader], Loader]:
    """Decorator: register a data source under ``name``."""

    def deco(fn: Loader) -> Loader:
        SOURCES[name] = Source(fn, syntax, about, example)
        return fn

    return deco


def source_lines() -> list[str]:
    """One line per source, all of the same shape: ``SYNTAX  ABOUT  e.g. EXAMPLE`` in aligned columns."""
    _ensure_registered()
    rows = [(s.syntax, s.about, s.example) for _, s in sorted(SOURCES.items())]
    rows.append(("SPEC+SPEC", "a mixture: tasks drawn from several sources (SPEC@W weighs one)",
                 "glyphs+folder:./my_images"))
    w0, w1 = (max(len(r[i]) for r in rows) for i in (0, 1))
    return [f"{a:<{w0}}  {b:<{w1}}  e.g. {c}" for a, b, c in rows]


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
    ts = SOURCES[name].load(arg, cfg)
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


def splits_of(ts: TaskSet, cfg: DataConfig) -> dict[str, TaskSet]:
    """The ``train`` / ``val`` / ``test`` splits of ``ts`` as ``cfg`` sets them (``data.split_fractions``,
    ``data.split_seed``, ``data.split_file``): the one spelling of a run's split, for tasks already loaded."""
    return ts.split(cfg.split_fractions, cfg.split_seed, cfg.split_file)
