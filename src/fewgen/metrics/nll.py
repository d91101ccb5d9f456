"""Summary statistics of held-out NLL: per-task means and a 95% confidence interval over tasks."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def mean_ci95(per_task: Tensor) -> tuple[float, float]:
    """Mean over tasks and the half-width of its 95% normal-approximation confidence interval."""
    x = per_task.double()
    n = x.numel()
    if n == 0:
        return float("nan"), float("nan")
    sd = float(x.std(unbiased=True)) if n > 1 else 0.0
    return float(x.mean()), 1.96 * sd / math.sqrt(n)


def per_task_mean(values: Tensor, task_index: Tensor, num_tasks: int) -> Tensor:
    """Average ``values`` (E,) by ``task_index`` (E,) -> (num_tasks,), vectorised (index_add)."""
    sums = torch.zeros(num_tasks, dtype=torch.float64).index_add_(0, task_index, values.double())
    counts = torch.zeros(num_tasks, dtype=torch.float64).index_add_(0, task_index, torch.ones_like(values, dtype=torch.float64))
    return sums / counts.clamp_min(1)


def paired_difference(a: dict[str, float], b: dict[str, float]) -> tuple[float, float, int]:
    """Mean of ``a[t] - b[t]`` over the tasks both have, the half-width of its 95% CI and the
    number of tasks: a paired comparison (the same tasks and support sets), far tighter than
    comparing two means whose CIs include the spread between tasks."""
    common = sorted(set(a) & set(b))
    mean, ci = mean_ci95(torch.tensor([a[t] - b[t] for t in common], dtype=torch.float64))
    return mean, ci, len(common)
