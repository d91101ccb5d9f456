"""Noise with a task axis: what every process draws for its shard of a meta-batch.

A model draws the noise of its training loss (:meth:`~fewgen.models.base.GenerativeModel.draw_noise`)
with :func:`task_randn`, once per meta-batch. Given a :class:`ShardGenerator` (one process's
shard, see :mod:`fewgen.distributed`), it draws the whole meta-batch's noise and keeps the
shard's rows, so every task gets the same noise whatever the number of processes. Models import
this module, not :mod:`fewgen.tasks` (models know nothing of where data comes from).
"""

from __future__ import annotations

import torch
from torch import Tensor


class ShardGenerator(torch.Generator):
    """The generator of one process's shard of a meta-batch (see :mod:`fewgen.distributed`).

    It is an ordinary (CPU) generator that also knows the global indices of the shard's tasks
    (``tasks``) and the meta-batch size (``total``): :func:`task_randn` then draws the noise of
    the whole meta-batch and keeps the shard's rows, so every task gets the same noise whatever
    the number of processes.
    """

    def __new__(cls, seed: int, tasks: Tensor, total: int) -> "ShardGenerator":
        self = super().__new__(cls)  # torch.Generator takes its arguments in __new__
        self.manual_seed(seed)
        self.tasks, self.total = tasks, total
        return self

    def __init__(self, seed: int, tasks: Tensor, total: int) -> None:
        super().__init__()


def task_randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str) -> Tensor:
    """Standard normal noise whose leading axis is the task axis of a meta-batch, on ``device``.

    Drawn on the generator's own device and then moved, so a CPU episode generator also
    serves a GPU model. Models draw the noise of :meth:`~fewgen.models.base.GenerativeModel.loss`
    through this function, once per meta-batch (not per task), so a
    :class:`ShardGenerator` can hand each process its rows of the global draw.
    """
    if generator is None:
        return torch.randn(shape, device=device)
    if isinstance(generator, ShardGenerator):
        if shape[0] != len(generator.tasks):
            raise ValueError(f"task_randn: noise for {shape[0]} tasks asked of a shard of {len(generator.tasks)} "
                             "tasks; draw the noise of the whole meta-batch at once (leading task axis)")
        full = torch.randn((generator.total, *shape[1:]), generator=generator, device=generator.device)
        return full[generator.tasks].to(device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)
