"""Multi-source task distributions (as in Meta-Dataset, Triantafillou et al. 2020).

``SPEC+SPEC[+...]`` mixes sources, e.g. ``glyphs+omniglot:../shared/data/omniglot``; a task's
source is drawn uniformly, or by weights given as ``SPEC@W`` (``glyphs@3+omniglot@1``). Task
names and split groups are prefixed with the source, so splits stay disjoint by group within
every source and a mixed meta-batch is still gathered with one indexing op.
"""

from __future__ import annotations

import math

import torch

from ..config import DataConfig
from ..errors import DataError
from .base import TaskSet
from .source import Loader


def parse_mixture(spec: str) -> list[tuple[str, float]]:
    """``'a@2+b'`` -> ``[('a', 2.0), ('b', 1.0)]``."""
    parts = []
    for item in spec.split("+"):
        item = item.strip()
        src, at, w = item.rpartition("@") if "@" in item else (item, "", "1")
        if not src:
            raise DataError(f"empty source in mixed data spec '{spec}'")
        try:
            weight = float(w)
        except ValueError:
            raise DataError(f"bad weight '{w}' for '{src}' in data spec '{spec}' (use SPEC@NUMBER)") from None
        if not (math.isfinite(weight) and weight > 0):
            raise DataError(f"weight of '{src}' in data spec '{spec}' must be positive")
        parts.append((src, weight))
    return parts


def mix_tasksets(parts: list[tuple[str, TaskSet, float]]) -> TaskSet:
    """Concatenate task sets (``(label, taskset, weight)``); episodes draw a task's source by weight."""
    shapes = {ts.example_shape for _, ts, _ in parts}
    modalities = {ts.modality for _, ts, _ in parts}
    if len(shapes) > 1 or len(modalities) > 1:
        raise DataError("mixed sources must have the same modality and example shape, got "
                        + ", ".join(f"{lab}: {ts.modality} {ts.example_shape}" for lab, ts, _ in parts))
    names, groups, examples = [], [], []
    for lab, ts, _ in parts:
        names += [f"{lab}/{n}" for n in ts.names]
        groups += [f"{lab}/{g}" for g in ts.groups]
        examples += [ts.examples(i) for i in range(len(ts))]
    meta = dict(parts[0][1].meta)
    meta["mix_weights"] = {lab: w for lab, _, w in parts}
    return TaskSet.from_lists(names, groups, examples, parts[0][1].modality, "+".join(lab for lab, _, _ in parts), meta)


def mixture_task_ids(ts: TaskSet, num_tasks: int, generator: torch.Generator) -> torch.Tensor:
    """Draw each task's source by weight, then a task uniformly within it (vectorised)."""
    labels = list(ts.meta["mix_weights"])
    src = torch.tensor([labels.index(n.split("/", 1)[0]) if n.split("/", 1)[0] in labels else 0 for n in ts.names])
    present = [i for i in range(len(labels)) if (src == i).any()]
    w = torch.tensor([ts.meta["mix_weights"][labels[i]] for i in present], dtype=torch.float64)
    pick = torch.multinomial(w / w.sum(), num_tasks, replacement=True, generator=generator)  # (T,) source slot
    counts = torch.stack([(src == present[i]).sum() for i in range(len(present))])
    order = torch.argsort(src, stable=True)  # tasks grouped by source
    starts = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), counts[:-1]]), 0)
    within = (torch.rand(num_tasks, generator=generator) * counts[pick]).long()
    return order[starts[pick] + within]


def load_mixture(spec: str, cfg: DataConfig, load_part: Loader) -> TaskSet:
    """Load every source of a ``+`` spec with ``load_part`` (the loader of one spec,
    :func:`fewgen.tasks.spec.load_tasks`) and mix them."""
    parts, seen = [], {}
    for src, w in parse_mixture(spec):
        ts = load_part(src, cfg)
        base = src.split(":")[0]
        seen[base] = seen.get(base, 0) + 1
        parts.append((base if seen[base] == 1 else f"{base}{seen[base]}", ts, w))
    return mix_tasksets(parts)
