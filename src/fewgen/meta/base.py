"""What a meta-learning algorithm is: a meta-objective over a meta-batch of tasks.

``min_theta E_t [ L(theta, D_t^support, D_t^query) ]``: an algorithm turns parameters and an
:class:`~fewgen.tasks.base.Episode` into one differentiable scalar. Everything else (the
optimiser, logging, checkpoints, distribution) lives in :mod:`fewgen.training`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..config import TrainConfig
from ..models import GenerativeModel, Params
from ..tasks.base import Episode


def query_mean(per_example: Tensor, mask: Tensor) -> Tensor:
    """The mean of per-example query losses ``(..., Q)`` over the present queries (``mask``
    ``(..., Q)`` bool, see :class:`~fewgen.tasks.base.Episode`): tasks with few examples have
    fewer queries. With every query present it is ``per_example.mean()``, value and gradient bit
    for bit on any device (the mean over all slots times exactly 1), so full episodes train as before."""
    m = mask.to(per_example.dtype)
    present = m.sum().clamp_min(1.0)
    rescale = torch.where(present == m.numel(), torch.ones_like(present), m.numel() / present)  # 1 when full
    return (per_example * m).mean() * rescale


class MetaAlgorithm:
    """Base class: subclasses implement :meth:`meta_loss` and may own meta-parameters of their own (``algo_params``)."""

    name: str = ""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    def algo_params(self, model: GenerativeModel) -> dict[str, Tensor]:
        """Meta-parameters the algorithm owns besides the model's (e.g. Meta-SGD step sizes).
        Returned tensors are optimised with the model and stored in checkpoints."""
        return {}

    def meta_loss(self, model: GenerativeModel, params: Params, algo_params: dict[str, Tensor], ep: Episode,
                  generator: torch.Generator) -> Tensor:
        """The scalar meta-objective (nats per query example) of one meta-batch."""
        raise NotImplementedError

    def compiled_meta_loss(self) -> Callable[..., Tensor]:
        """:meth:`meta_loss` with its hot part under ``torch.compile`` (``train.compile``): by
        default all of it. Only :func:`fewgen.training.compiled` calls this, and it runs the
        eager :meth:`meta_loss` instead where compiling fails."""
        return torch.compile(self.meta_loss)
