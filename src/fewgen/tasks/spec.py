"""Data spec strings: one string names a task source everywhere on the CLI.

``omniglot`` | ``omniglot:PATH`` | ``glyphs`` | ``icons[:...]`` | ``folder:PATH`` | ``words``
| ``words:LANG,...`` | ``text:PATH`` | ``toy`` | ``toy:NAME`` and mixtures ``SPEC+SPEC`` (see :mod:`fewgen.tasks.mix`).

The table :data:`SOURCES` names every source, the module and loader ``(argument, DataConfig)
-> TaskSet`` that read it (like :data:`fewgen.models.FAMILIES`); a source's module is imported
only when the source is loaded, so importing this module stays cheap.
"""

from __future__ import annotations

import dataclasses

from ..config import DataConfig
from ..errors import DataError
from .base import TaskSet
from .mix import load_mixture, parse_mixture
from .source import Source

# name -> Source(module, loader, syntax, about, example); `fewgen data list` shows them sorted by name
SOURCES: dict[str, Source] = {
    "folder": Source("images", "load_folder", "folder:PATH",
                     "your images: PATH/<task>/<image files>, one sub-folder per task", "folder:./my_images"),
    "glyphs": Source("images", "load_glyphs", "glyphs",
                     "characters rendered from the fonts inside matplotlib (offline)", "glyphs"),
    "icons": Source("icons", "load_icons", "icons | icons:ITEM,...",
                    "colour icon themes (apt): a name a task; ITEM = THEME | PATH | by=theme | split=theme",
                    "icons:split=theme", image_size=32),
    "omniglot": Source("images", "load_omniglot", "omniglot | omniglot:PATH",
                       "Omniglot characters (downloaded, or the official archives in PATH)",
                       "omniglot:../shared/data/omniglot"),
    "text": Source("text", "load_text", "text:PATH",
                   "your texts: PATH/<task>.txt, one example a line (UTF-8)", "text:./my_texts"),
    "toy": Source("toy", "load_toy", "toy | toy:gauss2d",
                  "2-D Gaussians with random means (tests, intuition)", "toy"),
    "words": Source("text", "load_words", "words | words:LANG,...",
                    "frequent words, one language a task, from wordfreq (offline)", "words:en,fr,de"),
}


def source_lines() -> list[str]:
    """One line per source, all of the same shape: ``SYNTAX  ABOUT  e.g. EXAMPLE`` in aligned columns."""
    rows = [(s.syntax, s.about, s.example) for _, s in sorted(SOURCES.items())]
    rows.append(("SPEC+SPEC", "a mixture: tasks drawn from several sources (SPEC@W weighs one)",
                 "glyphs+folder:./my_images"))
    w0, w1 = (max(len(r[i]) for r in rows) for i in (0, 1))
    return [f"{a:<{w0}}  {b:<{w1}}  e.g. {c}" for a, b, c in rows]


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``name:argument`` into its parts, validating the name."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError("empty data spec; valid sources: " + ", ".join(sorted(SOURCES)))
    name, _, arg = spec.strip().partition(":")
    if name not in SOURCES:
        raise DataError(f"unknown data spec '{spec}'; valid sources: " + ", ".join(sorted(SOURCES)))
    return name, arg


def load_tasks(spec: str, cfg: DataConfig | None = None) -> TaskSet:
    """Load every task of a data spec (all splits). ``data.image_size`` 0 (the default) is the
    source's own size (:attr:`Source.image_size`; a mixture takes its first source's)."""
    cfg = cfg or DataConfig()
    if "+" in spec:  # a mixture of sources, each loaded as a spec of its own, all at one size
        if not cfg.image_size:
            first = SOURCES[parse_spec(parse_mixture(spec)[0][0])[0]]
            cfg = dataclasses.replace(cfg, image_size=first.image_size)
        return load_mixture(spec, cfg, load_tasks)
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


def splits_of(ts: TaskSet, cfg: DataConfig) -> dict[str, TaskSet]:
    """The ``train`` / ``val`` / ``test`` splits of ``ts`` as ``cfg`` sets them (``data.split_fractions``,
    ``data.split_seed``, ``data.split_file``): the one spelling of a run's split, for tasks already loaded."""
    return ts.split(cfg.split_fractions, cfg.split_seed, cfg.split_file)
