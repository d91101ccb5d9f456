"""Image sample quality of K-shot adaptation on held-out tasks: the protocol ``fewgen eval
--metrics fid,...`` and ``fewgen bench`` share.

A few held-out tasks get a fixed support (K seeded examples) and a set of real held-out examples
(:func:`quality_set`), with the domain feature network trained on the meta-train tasks
(:mod:`fewgen.feature_net`). Every method then adapts to the same supports, samples from the
same seed, and gets the figures of :func:`fewgen.metrics.quality.quality_report` (FID, KID,
fidelity, diversity, memorisation, each beside real held-out data's value) after 0 adaptation
steps and after the most, per sampler (:func:`quality_reports`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .adaptation import AdaptFn, Adapted, adapted_sample
from .config import EvalConfig
from .tasks.base import TaskSet

REAL_PER_TASK = 10  # real held-out examples per quality task (fewer where the tasks are smaller)


@dataclass(frozen=True)
class QualitySet:
    """The fixed material every method is scored on."""

    support: Tensor  # (T, K, *X) the shots each method adapts to
    real: Tensor  # (T, R, *X) real held-out examples of the same tasks
    net: nn.Module  # the domain feature network (fewgen.feature_net.FeatureNet)


def quality_set(train_ts: TaskSet, held_out: TaskSet, shots: int, tasks: int, seed: int, feature_dir: str | Path,
                feature_steps: int = 300, progress: bool = False) -> QualitySet | None:
    """Up to ``tasks`` seeded held-out image tasks with ``shots`` support examples and up to
    :data:`REAL_PER_TASK` real ones each, and the feature network of the meta-train tasks
    ``train_ts`` (trained for ``feature_steps`` episodes, cached in ``feature_dir``). None for
    text, or when fewer than two tasks have ``shots + 1`` examples."""
    if held_out.modality != "image":
        return None
    from .feature_net import feature_net_for

    pool = held_out.with_min_examples(shots + 1)  # one real example at least (two for FID, KID and diversity per task)
    if len(pool) < 2:
        return None
    ids = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:tasks]
    g = torch.Generator().manual_seed(seed + 1)
    x = pool.gather(ids, min(shots + REAL_PER_TASK, int(pool.counts[ids].min())), g)
    if progress:
        print("training the domain feature network (prototypical network on meta-train tasks)", flush=True)
    # Episodes of 5 shots + 5 queries per task, fewer where the tasks are smaller (2 examples: 1 + 1).
    most = int(train_ts.counts.max()) if len(train_ts) else 0
    f_shots = min(5, max(1, most // 2))
    f_queries = min(5, max(1, most - f_shots))
    net = feature_net_for(train_ts, feature_dir, steps=feature_steps, shots=f_shots, queries=f_queries,
                          seed=seed, progress=progress)
    return QualitySet(x[:, :shots], x[:, shots:], net)


def quality_reports(adapt_fn: AdaptFn, q: QualitySet, steps: int, ecfg: EvalConfig, samples: int = 32,
                    seed: int = 0, grid: str | Path | None = None, label: str = "samples",
                    all_samplers: bool = True, sensitivity: bool = False) -> dict[str, Any]:
    """Sample-quality figures of ``adapt_fn`` on ``q`` after 0 adaptation steps and after
    ``steps``: one report per step count (key ``"s"``, the sampler ``ecfg`` configures) and, with
    ``all_samplers``, per other sampler (``"s:label"``, the family's ``sampler_variants``), each with its
    sampler's label and the seconds per 64 samples (``samples`` per task, batched over the tasks,
    drawn from ``seed``). ``grid``: a PNG of four tasks' shots and samples after ``steps``
    (rows labelled ``label s=steps``). ``sensitivity``: the configured sampler's report also gets
    ``sensitivity`` (:func:`fewgen.metrics.quality.support_sensitivity`): the same samples drawn
    again, from the same seed, with each task's support swapped for another task's (twice the
    sampling time)."""
    from .metrics.quality import partners, quality_report

    mask = torch.ones(q.support.shape[:2], dtype=torch.bool)
    partner = partners(len(q.support), seed) if sensitivity else None
    res = {}
    for s in sorted({0, steps}):
        a: Adapted = adapt_fn(q.support, mask, s)
        for j, (sampler, opts) in enumerate(a.model.sampler_variants(ecfg)[: None if all_samplers else 1]):
            t0 = time.perf_counter()
            x = adapted_sample(a, samples, torch.Generator().manual_seed(seed), **opts)  # (T, n, *X)
            seconds_64 = (time.perf_counter() - t0) * 64 / (x.shape[0] * x.shape[1])
            swapped = None
            if partner is not None and j == 0:  # the same noise, another task's shots
                swapped = adapted_sample(adapt_fn(q.support[partner], mask, s), samples,
                                         torch.Generator().manual_seed(seed), **opts)
            res[str(s) if j == 0 else f"{s}:{sampler}"] = {
                **quality_report(x, q.support, q.real, q.net, swapped=swapped, partner=partner),
                "sampler": sampler, "seconds_per_64": seconds_64}
            if s == steps and j == 0 and grid is not None:
                _save_grid(grid, q.support, x, f"{label} s={s}")
    return res


def _save_grid(path: str | Path, support: Tensor, samples: Tensor, label: str) -> None:
    """Four tasks' shots, each followed by twelve of its samples (rows labelled ``label``)."""
    from .pictures import save_grid

    rows, labels = [], []
    for t in range(min(4, len(samples))):
        rows += [support[t], samples[t, :12]]
        labels += ["shots", label]
    save_grid(path, rows, labels=labels, gap_after=list(range(1, len(rows), 2)))
