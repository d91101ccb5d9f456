"""Low-dimensional task families for tests and intuition.

``toy`` / ``toy:gauss2d``: each task is a 2-D Gaussian with its own mean (drawn from
N(0, 3^2 I)) and a shared isotropic scale 0.5; tasks are grouped into 10 groups for splits.
"""

from __future__ import annotations

import torch

from ..config import DataConfig
from ..errors import DataError
from .base import TaskSet

TOY_TASKS = 400
TOY_EXAMPLES = 40


def gaussian_tasks(num_tasks: int = TOY_TASKS, examples: int = TOY_EXAMPLES, dim: int = 2,
                   mean_scale: float = 3.0, std: float = 0.5, seed: int = 0) -> TaskSet:
    """Tasks ``N(mu_t, std^2 I)`` with ``mu_t ~ N(0, mean_scale^2 I)``; vectorised draw."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(num_tasks, 1, dim, generator=g) * mean_scale
    x = mu + std * torch.randn(num_tasks, examples, dim, generator=g)
    names = [f"gauss{i:04d}" for i in range(num_tasks)]
    groups = [f"g{i % 10}" for i in range(num_tasks)]
    return TaskSet.from_lists(names, groups, list(x), "toy", "toy", {"mean_scale": mean_scale, "std": std})


def load_toy(arg: str, cfg: DataConfig) -> TaskSet:
    """The ``toy`` source (``toy`` or ``toy:gauss2d``): :func:`gaussian_tasks` drawn with the split seed."""
    if arg not in ("", "gauss2d"):
        raise DataError(f"unknown toy family '{arg}'; valid: gauss2d")
    return gaussian_tasks(seed=cfg.split_seed)
