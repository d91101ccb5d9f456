"""Support sensitivity: how much do a text model's samples change when only its support changes?

A model can score well on average and still ignore its support (e.g. sample the meta-training
mix of languages whatever the shots). The check: every held-out task A is paired with another
task B (of A's script when there is one), and the n samples drawn given A's support are set
beside the n drawn given B's support *with the same seed*, i.e. from the same generator state
(:func:`fewgen.evaluate.text_sample_report` samples every task alone from one seed). Reported:

- ``identical``: the share of same-index samples that are the same string (1.0 for a model
  that ignores its support: its samples depend on the seed alone);
- ``edit_distance``: the mean normalised edit distance (Levenshtein over the longer length,
  :mod:`fewgen.metrics.edit_distance`) between same-index samples (0 for such a model);
- ``edit_distance_real``: the same distance between random real strings of the two tasks, the
  reference: how far apart two languages' real words are. A model that reads its support
  closes the gap between the two.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from .edit_distance import normalized_edit_distance
from .text_groups import group_means

FIGURES = ("identical", "edit_distance", "edit_distance_real")


def partners(names: Sequence[str], scripts: Mapping[str, str], seed: int = 0) -> dict[str, str]:
    """Each task's partner: another task drawn by ``seed``, of its own script when it has one
    (else any other task). ``{}`` for fewer than two tasks."""
    if len(names) < 2:
        return {}
    g = torch.Generator().manual_seed(seed)
    out = {}
    for a in names:
        same = [b for b in names if b != a and scripts.get(b) == scripts.get(a)]
        pool = same or [b for b in names if b != a]
        out[a] = pool[int(torch.randint(len(pool), (1,), generator=g))]
    return out


def pair_figures(samples_a: Sequence[str], samples_b: Sequence[str], real_a: Sequence[str],
                 real_b: Sequence[str]) -> dict[str, float | None]:
    """The three figures of one pair of tasks (module docstring): same-index samples of the two
    supports, and same-index real strings of the two tasks (None without real strings)."""
    n = min(len(samples_a), len(samples_b))
    r = min(len(real_a), len(real_b))
    same = sum(x == y for x, y in zip(samples_a[:n], samples_b[:n]))
    return {"identical": same / n if n else None,
            "edit_distance": float(normalized_edit_distance(samples_a[:n], samples_b[:n]).mean()) if n else None,
            "edit_distance_real": float(normalized_edit_distance(real_a[:r], real_b[:r]).mean()) if r else None}


def support_sensitivity(samples: Mapping[str, Sequence[str]], real: Mapping[str, Sequence[str]],
                        scripts: Mapping[str, str], seed: int = 0) -> dict[str, Any]:
    """Support sensitivity of tasks' samples drawn with the same seed (``samples[task]``), with
    each task's real strings (``real[task]``, shuffled, none of the support) and scripts.

    Returns ``pairs``, ``same_script_pairs``, the means over pairs of :data:`FIGURES`, their
    ``by_script`` means (by the first task's script) and ``per_pair`` ``{task: {"partner": ...,
    figure: value}}``. Figures are None with fewer than two tasks.
    """
    names = list(samples)
    pair_of = partners(names, scripts, seed)
    per_pair: dict[str, dict[str, Any]] = {
        a: {"partner": b, **pair_figures(samples[a], samples[b], real.get(a, []), real.get(b, []))}
        for a, b in pair_of.items()}
    overall = group_means(per_pair, {a: "all" for a in per_pair}).get("all", {})
    return {"pairs": len(per_pair),
            "same_script_pairs": sum(scripts.get(a) == scripts.get(b) for a, b in pair_of.items()),
            **{k: overall.get(k) for k in FIGURES},
            "by_script": group_means(per_pair, scripts), "per_pair": per_pair}
