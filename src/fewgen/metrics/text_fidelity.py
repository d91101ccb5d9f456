"""Text fidelity: does a sample read like the language (the task) of its support?

The text twin of the image fidelity metric (:func:`fewgen.metrics.quality.fidelity`). For every
held-out task a character n-gram *language identifier* (orders 1-4, interpolated Witten-Bell,
:mod:`fewgen.models.ngram`, as in n-gram language identification, Cavnar & Trenkle 1994) is fit
on that task's *reference* strings: never the support and never the samples. A string is
attributed to the task under whose model it is most likely. A task's fidelity is the share of
its samples attributed to it,

- among all candidate tasks (chance ``1 / T``), and
- among the tasks that share its script (the dominant Unicode script of its reference strings,
  from the character names: LATIN, CYRILLIC, ARABIC, CJK, ...), the harder test: a sample in
  the right letters but the wrong language fails it (chance ``1 / tasks of that script``).

Real held-out strings of the task (in neither the references nor the support) give the ceiling
the identifier allows. Scoring is vectorised: each string is encoded once, and each task's
tables score all strings' positions in one lookup (no loop over characters per task).
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from ..models import ngram
from .nll import mean_ci95

ORDER = 4  # characters of history + 1


def script_of(char: str) -> str:
    """The script of a letter, the first word of its Unicode name (``"LATIN"``, ``"CJK"``, ...)."""
    return unicodedata.name(char, "UNKNOWN").split(" ")[0]


def dominant_script(strings: Sequence[str]) -> str:
    """The most common script among the letters of ``strings`` (``"NONE"`` without letters)."""
    counts = Counter(script_of(c) for s in strings for c in s if unicodedata.category(c).startswith("L"))
    return counts.most_common(1)[0][0] if counts else "NONE"


@dataclass(frozen=True)
class LanguageID:
    """One character n-gram model per task, over a shared alphabet."""

    names: tuple[str, ...]
    scripts: tuple[str, ...]
    alphabet: dict[str, int]  # the reference characters -> 0 .. V-1; V is "unknown", V+1 the end
    tables: tuple[ngram.NgramTables, ...]

    @property
    def unknown(self) -> int:
        return len(self.alphabet)


def _encode(lid_alphabet: dict[str, int], strings: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Character ids of strings, each followed by the end: (N, L) padded with the end, and the
    mask (N, L) of real positions (characters and one end each)."""
    unk, end = len(lid_alphabet), len(lid_alphabet) + 1
    width = max((len(s) for s in strings), default=0) + 1
    ids = torch.full((len(strings), width), end, dtype=torch.long)
    for row, s in enumerate(strings):
        if s:
            ids[row, : len(s)] = torch.tensor([lid_alphabet.get(c, unk) for c in s])
    lengths = torch.tensor([len(s) + 1 for s in strings], dtype=torch.long)
    return ids, torch.arange(width)[None, :] < lengths[:, None]


def _histories(ids: Tensor, alphabet_size: int) -> list[Tensor]:
    """History codes of lengths 0 .. ORDER-1 at every position of ids (N, L) (start before)."""
    start = alphabet_size + 2
    inp = torch.cat([torch.full_like(ids[:, :1], start), ids[:, :-1]], 1)
    return [ngram.history_codes(inp, m, alphabet_size + 3, start) for m in range(ORDER)]


def fit_language_id(references: Sequence[Sequence[str]], names: Sequence[str] | None = None) -> LanguageID:
    """A language identifier from each task's reference strings (T lists of strings)."""
    chars = sorted({c for refs in references for s in refs for c in s})
    alphabet = {c: i for i, c in enumerate(chars)}
    outputs = len(alphabet) + 2  # characters, unknown, end
    tables = []
    for refs in references:
        ids, mask = _encode(alphabet, list(refs))
        hist = [h[mask] for h in _histories(ids, len(alphabet))]
        tables.append(ngram.fit(hist, ids[mask], len(alphabet) + 3, outputs, "witten_bell"))
    names = tuple(names) if names is not None else tuple(str(i) for i in range(len(references)))
    return LanguageID(names, tuple(dominant_script(r) for r in references), alphabet, tuple(tables))


def log_likelihoods(lid: LanguageID, strings: Sequence[str]) -> Tensor:
    """log p(string | task) under every task's model: (T, N)."""
    ids, mask = _encode(lid.alphabet, list(strings))
    hist = _histories(ids, len(lid.alphabet))
    return torch.stack([(ngram.log_prob(t, hist, ids) * mask).sum(1) for t in lid.tables])


def attribute(lid: LanguageID, strings: Sequence[str], task: int) -> tuple[Tensor, Tensor]:
    """Whether each of ``strings`` (meant to be of task ``task``) is attributed to it: among all
    tasks, and among the tasks of its script. Two (N,) bool tensors."""
    if not strings:
        return torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.bool)
    ll = log_likelihoods(lid, strings)  # (T, N)
    other_script = torch.tensor([s != lid.scripts[task] for s in lid.scripts])
    same = ll.masked_fill(other_script[:, None], -math.inf)
    return ll.argmax(0) == task, same.argmax(0) == task


def _share(hits: Tensor) -> float:
    return float(hits.double().mean()) if hits.numel() else math.nan


def _summary(out: dict[str, Any], name: str, values: list[float]) -> None:
    ok = torch.tensor([v for v in values if math.isfinite(v)], dtype=torch.float64)
    mean, ci = mean_ci95(ok) if ok.numel() else (math.nan, math.nan)
    out[name] = None if not math.isfinite(mean) else mean
    out[name + "_ci95"] = None if not math.isfinite(ci) else ci


def fidelity_report(samples: Sequence[Sequence[str]], references: Sequence[Sequence[str]],
                    real: Sequence[Sequence[str]], names: Sequence[str] | None = None) -> dict[str, Any]:
    """Text fidelity of T tasks: ``samples[t]`` generated from task t's support, ``references[t]``
    (fit the identifier) and ``real[t]`` (held-out real strings: the ceiling), all disjoint.

    Returns ``fidelity`` and ``fidelity_same_script`` (means over tasks, with ``_ci95``), the same
    for the real strings (``fidelity_real``, ``fidelity_real_same_script``), the chance levels
    ``fidelity_chance`` (1 / T) and ``fidelity_chance_same_script`` (mean over tasks of 1 / the
    tasks of its script), ``scripts`` and ``per_task`` ``{name: {figure: value}}`` (the chance
    levels too, so that means over a group of tasks have theirs).
    """
    if not len(samples) == len(references) == len(real):
        raise ValueError(f"fidelity_report: {len(samples)} sample lists, {len(references)} reference lists "
                         f"and {len(real)} real lists")
    lid = fit_language_id(references, names)
    group = Counter(lid.scripts)
    per_task: dict[str, dict[str, float]] = {}
    for t, name in enumerate(lid.names):
        gen_all, gen_same = attribute(lid, samples[t], t)
        real_all, real_same = attribute(lid, real[t], t)
        per_task[name] = {"fidelity": _share(gen_all), "fidelity_same_script": _share(gen_same),
                          "fidelity_real": _share(real_all), "fidelity_real_same_script": _share(real_same),
                          "fidelity_chance": 1.0 / len(lid.names),
                          "fidelity_chance_same_script": 1.0 / group[lid.scripts[t]]}
    out: dict[str, Any] = {}
    for key in ("fidelity", "fidelity_same_script", "fidelity_real", "fidelity_real_same_script"):
        _summary(out, key, [r[key] for r in per_task.values()])
    out.update({"fidelity_chance": 1.0 / len(lid.names) if lid.names else None,
                "fidelity_chance_same_script": sum(1.0 / group[s] for s in lid.scripts) / max(len(lid.scripts), 1),
                "fidelity_tasks": len(lid.names), "scripts": dict(zip(lid.names, lid.scripts)),
                "per_task": {n: {k: (v if math.isfinite(v) else None) for k, v in r.items()}
                             for n, r in per_task.items()}})
    return out
