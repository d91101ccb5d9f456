"""K-shot support -> adapted generator.

An :class:`Adapted` generator is a model plus what adaptation produced for each of T tasks:
its context (amortized: the support's encoding) and its parameters (shared, or per task after
fine-tuning, with a leading task axis). Amortized adaptation is one forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .models import Generator, Params, call, params_of


@dataclass
class Adapted:
    """The result of adapting ``model`` to T tasks."""

    model: Generator
    params: Params  # shared parameters, or per-task ones with a leading T axis (``per_task``)
    context: Tensor  # (T, C)
    per_task: bool = False

    @property
    def num_tasks(self) -> int:
        return self.context.shape[0]


def adapt(model: Generator, support: Tensor, mask: Tensor | None = None, params: Params | None = None,
          conditional: bool = True) -> Adapted:
    """Adapt to T tasks from their supports ``(T, K, *X)`` (``mask`` (T, K) marks present shots).

    ``conditional=False`` ignores the support's content (an unconditional model: the context
    of the empty set).
    """
    params = params if params is not None else params_of(model)
    if mask is None:
        mask = torch.ones(support.shape[:2], dtype=torch.bool, device=support.device)
    if not conditional:
        mask = torch.zeros_like(mask)
    with torch.no_grad():
        ctx = call(model, params, "context", support, mask)
    return Adapted(model, {k: v.detach() for k, v in params.items()}, ctx, per_task=False)


def adapted_nll(adapted: Adapted, x: Tensor, num_samples: int = 100, chunk: int = 25,
                generator: torch.Generator | None = None) -> Tensor:
    """-log p(x | adapted task) in nats for x (T, N, *X) -> (T, N)."""
    m = adapted.model
    with torch.no_grad():
        if not adapted.per_task:
            return call(m, adapted.params, "nll", x, adapted.context, num_samples, chunk, generator)
        rows = [call(m, {k: v[t] for k, v in adapted.params.items()}, "nll", x[t : t + 1],
                     adapted.context[t : t + 1], num_samples, chunk, generator) for t in range(adapted.num_tasks)]
        return torch.cat(rows)


def adapted_sample(adapted: Adapted, n: int, generator: torch.Generator | None = None, **kwargs) -> Tensor:
    """n samples for each adapted task, (T, n, *X)."""
    m = adapted.model
    with torch.no_grad():
        if not adapted.per_task:
            return call(m, adapted.params, "sample", n, adapted.context, generator, *kwargs.values())
        rows = [call(m, {k: v[t] for k, v in adapted.params.items()}, "sample", n, adapted.context[t : t + 1],
                     generator, *kwargs.values()) for t in range(adapted.num_tasks)]
        return torch.cat(rows)
