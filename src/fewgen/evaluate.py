"""Held-out evaluation: conditional NLL of query examples given K support examples.

Protocol. For every held-out task and every K, the task's examples are permuted once (seeded)
and cut into query blocks of ``q = min(max_queries, n - K)`` examples, so that every example
is a query at least once; each block is scored given K *other* examples of the same task as
the support. A task's score is the mean over its queries; the reported figure is the mean
over tasks with a 95% CI over tasks. K = 0 (the empty support) is the unconditional NLL, so
the gain from conditioning shows. With 2 examples per task, K = 1 uses each as the support of
the other ("both ways").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .adapt import Adapted, AdaptFn, adapt, adapted_nll
from .config import EvalConfig
from .errors import DataError
from .metrics.nll import mean_ci95, per_task_mean
from .models import Generator
from .tasks.base import TaskSet, episode_generator


@dataclass(frozen=True)
class EvalEpisodes:
    """All evaluation episodes for one K, grouped by query size for batching."""

    task: Tensor  # (E,) task index of each episode
    support: Tensor  # (E, K, *X)
    query: Tensor  # (E, q, *X)


def eval_episodes(ts: TaskSet, shots: int, max_queries: int, seed: int) -> list[EvalEpisodes]:
    """The rotating-query episodes of every task with at least K + 1 examples."""
    groups: dict[int, list[tuple[int, Tensor, Tensor]]] = {}
    for i in range(len(ts)):
        ex = ts.examples(i)
        n = len(ex)
        if n < shots + 1:
            continue
        q = min(max_queries, n - shots)
        perm = torch.randperm(n, generator=episode_generator(seed, i))
        for j in range(math.ceil(n / q)):
            qi = perm[(j * q + torch.arange(q)) % n]
            si = perm[(j * q + q + torch.arange(shots)) % n]
            groups.setdefault(q, []).append((i, ex[si], ex[qi]))
    return [EvalEpisodes(torch.tensor([t for t, _, _ in eps]), torch.stack([s for _, s, _ in eps]),
                         torch.stack([x for _, _, x in eps])) for eps in groups.values()]


def default_adapt_fn(model: Generator, conditional: bool = True, lr: float = 0.05, seed: int = 0) -> AdaptFn:
    """Adaptation of a bare model: its context (the support's, or the empty set's when not
    ``conditional``), then ``steps`` SGD steps at ``lr`` on the support (the shared inner loop).
    For a checkpoint use :func:`fewgen.adapt.adapter_for_checkpoint`, which knows its algorithm."""
    def fn(support: Tensor, mask: Tensor, steps: int) -> Adapted:
        return adapt(model, support, mask, conditional=conditional, steps=steps, lr=lr,
                     generator=torch.Generator().manual_seed(seed))
    return fn


def conditional_nll(adapt_fn: AdaptFn, ts: TaskSet, shots: int, steps: int, cfg: EvalConfig,
                    progress: bool = False, per_example: Callable[[Tensor, Tensor], Tensor] | None = None
                    ) -> dict[str, Any]:
    """Mean held-out NLL (nats per example) given K shots after ``steps`` adaptation steps.

    ``per_example(nll (B,q), query (B,q,*X)) -> (B,q)`` optionally turns NLLs into another
    per-example figure (e.g. bits per character) averaged the same way.
    """
    eps_groups = eval_episodes(ts, shots, cfg.max_queries, cfg.seed)
    if not eps_groups:
        raise DataError(f"{ts.source}: no task has more than {shots} examples; cannot evaluate {shots}-shot")
    g = torch.Generator().manual_seed(cfg.seed)
    task_idx, values, extra_vals, nq = [], [], [], 0
    total = sum(len(e.task) for e in eps_groups)
    bar = tqdm(total=total, disable=not progress, desc=f"eval K={shots} steps={steps}", leave=False)
    for e in eps_groups:
        for b in range(0, len(e.task), cfg.batch_tasks):
            sup, qry = e.support[b : b + cfg.batch_tasks], e.query[b : b + cfg.batch_tasks]
            mask = torch.ones(sup.shape[:2], dtype=torch.bool)
            a = adapt_fn(sup, mask, steps)
            nll = adapted_nll(a, qry, cfg.importance_samples, cfg.chunk, g)  # (B,q)
            task_idx.append(e.task[b : b + cfg.batch_tasks, None].expand_as(nll).reshape(-1))
            values.append(nll.reshape(-1))
            if per_example is not None:
                extra_vals.append(per_example(nll, qry).reshape(-1))
            nq += nll.numel()
            bar.update(len(sup))
    bar.close()
    ti = torch.cat(task_idx)
    present = torch.unique(ti)
    per_task = per_task_mean(torch.cat(values), ti, len(ts))[present]
    mean, ci = mean_ci95(per_task)
    out: dict[str, Any] = {"nll_nats": mean, "ci95": ci, "tasks": int(len(present)), "queries": nq,
                           # per-task figures allow paired comparisons (methods, shots) on the same tasks
                           "per_task": {ts.names[i]: float(v) for i, v in zip(present.tolist(), per_task)}}
    if per_example is not None:
        m2, c2 = mean_ci95(per_task_mean(torch.cat(extra_vals), ti, len(ts))[present])
        out["bits_per_char"], out["bits_per_char_ci95"] = m2, c2
    return out


def evaluate(adapt_fn: AdaptFn, ts: TaskSet, cfg: EvalConfig, progress: bool = True,
             per_example: Callable[[Tensor, Tensor], Tensor] | None = None,
             unconditional_fn: AdaptFn | None = None) -> dict[str, Any]:
    """The full NLL report: unconditional (K = 0) and every K in ``cfg.shots`` x ``cfg.steps``.

    Returns ``{"unconditional": {...}, "shots": {"K": {...}}, "steps": {"S": {"K": {...}}}}``
    where ``"shots"`` holds the steps = 0 figures.
    """
    if cfg.max_tasks and len(ts) > cfg.max_tasks:  # a seeded subset, spread over the groups
        ts = ts.subset(sorted(torch.randperm(len(ts), generator=torch.Generator().manual_seed(cfg.seed))
                              [: cfg.max_tasks].tolist()))
    report: dict[str, Any] = {}
    report["unconditional"] = conditional_nll(unconditional_fn or adapt_fn, ts, 0, 0, cfg, progress, per_example)
    report["steps"] = {}
    for s in cfg.steps:
        report["steps"][str(s)] = {str(k): conditional_nll(adapt_fn, ts, k, s, cfg, progress, per_example)
                                   for k in cfg.shots}
    if "0" in report["steps"]:
        report["shots"] = report["steps"]["0"]
    else:
        report["shots"] = {}
    return report


def format_report(report: dict[str, Any]) -> str:
    """A short human-readable table of an evaluation report."""
    lines = [f"{'support':>12} {'steps':>5} {'NLL (nats)':>12} {'±95%':>7} {'tasks':>6}"]
    u = report["unconditional"]
    lines.append(f"{'none (K=0)':>12} {0:>5} {u['nll_nats']:>12.2f} {u['ci95']:>7.2f} {u['tasks']:>6}"
                 + (f"   {u['bits_per_char']:.3f} bits/char" if "bits_per_char" in u else ""))
    for s, per_k in report["steps"].items():
        for k, r in per_k.items():
            lines.append(f"{'K=' + k:>12} {s:>5} {r['nll_nats']:>12.2f} {r['ci95']:>7.2f} {r['tasks']:>6}"
                         + (f"   {r['bits_per_char']:.3f} bits/char" if "bits_per_char" in r else ""))
    return "\n".join(lines)


def parse_int_list(text: str | Sequence[int], what: str) -> tuple[int, ...]:
    """'1,5,10' -> (1, 5, 10); a clear error otherwise."""
    if not isinstance(text, str):
        return tuple(int(t) for t in text)
    try:
        vals = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise DataError(f"--{what} must be comma-separated integers, got '{text}'") from None
    if not vals or min(vals) < 0:
        raise DataError(f"--{what} must be non-negative integers, got '{text}'")
    return vals
