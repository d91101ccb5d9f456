"""MAML and first-order MAML (with optional Meta-SGD step sizes), vectorised over tasks.

Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks"
(ICML 2017); Meta-PixelCNN (Bartunov & Vetrov 2018) used it for generative models. The meta-
objective of a meta-batch is the query loss after fine-tuning on the support::

    L(theta) = mean_t  L_query_t( phi_t ),   phi_t = inner_loop(theta, support_t)

(:mod:`fewgen.meta.inner`). Second order differentiates through the inner gradients; first order
(FOMAML, ``train.first_order`` or ``--algo fomaml``) treats them as constants. With
``train.learn_inner_lr`` the per-parameter inner step sizes are meta-learned too (Meta-SGD,
Li et al. 2017). ``train.adapt_params`` chooses what the inner loop changes (all, bias, FiLM
or LoRA variables), ``train.inner_augment`` / ``inner_select`` jitter the support and keep the
best step on a held-out jittered copy, ``train.inner_steps_random`` trains every task with a
random 1..inner_steps steps so the initialisation is good after any of them. Tasks run in
``torch.func.vmap`` in chunks of ``train.task_chunk`` tasks, each chunk differentiated and
freed before the next (:func:`~fewgen.meta.inner.chunked_task_mean`), so memory follows the
chunk, not the meta-batch; with ``train.compile`` the training loop
compiles the vmapped chunk (:meth:`MAML.compiled_meta_loss`), not the chunking around it.

Execution path (``train.task_map``): ``vmap`` runs a chunk's tasks vectorised; ``loop`` runs them
one by one with ordinary autograd (:func:`~fewgen.meta.inner.autograd_grad`), the arithmetic of
a plain per-task loop; both give the same meta-gradient (to rounding, tested). ``auto`` (the
default) is a fixed rule from the measurement (``benchmarks/meta_step_speed.py``, docs/results.md):
on CPU the loop is faster for first-order steps (1.10 against 1.35 CPU s for the image VAE;
vmap's transposed gradient sums and denormal BCE gradients cost it), vmap is as fast for
second-order ones, so ``auto`` is ``loop`` for first order on CPU and ``vmap`` otherwise. A rule,
not a timing taken at run time: the same seed gives the same run, bit for bit, every time.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from torch import Tensor

from ..config import TrainConfig
from ..models import GenerativeModel, Params
from ..tasks.base import Episode
from .base import MetaAlgorithm
from .inner import (chunked_task_mean, draw_episode_noise, fine_tune_task, init_inner_lrs, inner_config, inner_lrs,
                    map_tasks, noise_tasks, query_loss_task)


class MAML(MetaAlgorithm):
    """Second-order MAML on an unconditional generator (the context of the empty set)."""

    name = "maml"
    conditional = False  # the hybrid subclass conditions on the support too
    first_order = False

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        self.inner = inner_config(cfg, training=True, first_order=cfg.first_order or self.first_order,
                                  conditional=self.conditional)
        self.vectorize = True  # False: always a plain loop over tasks (the reference in the tests)

    def algo_params(self, model: GenerativeModel) -> dict[str, Tensor]:
        return init_inner_lrs(model, self.cfg.inner_lr, self.inner) if self.cfg.learn_inner_lr else {}

    def task_losses(self, model: GenerativeModel, params: Params, lrs: Params | None, support: Tensor, mask: Tensor,
                    query: Tensor, query_mask: Tensor, support_noise: dict[str, Tensor] | None, query_noise: Tensor | None,
                    vectorize: bool = True) -> Tensor:
        """Per-task query losses (over each task's present queries) after the inner loop, (T,);
        the tasks in ``vmap`` or (``vectorize=False``, or a model that is not vmappable) in a loop."""
        def one(sup: Tensor, msk: Tensor, qry: Tensor, qmsk: Tensor, ns: dict[str, Tensor] | None, nq: Tensor | None) -> Tensor:
            phi = fine_tune_task(model, params, sup, msk, ns, self.inner, lrs)
            return query_loss_task(model, phi, sup, msk, qry, nq, self.conditional, query_mask=qmsk)

        return map_tasks(one, (support, mask, query, query_mask, support_noise, query_noise), (True,) * 6,
                         vectorize and model.vmappable)

    def meta_loss(self, model: GenerativeModel, params: Params, algo_params: dict[str, Tensor], ep: Episode,
                  generator: torch.Generator) -> Tensor:
        vectorize = self.use_vmap(model, params)
        return self._meta_loss(partial(self.task_losses, vectorize=vectorize), model, params, algo_params, ep, generator)

    def use_vmap(self, model: GenerativeModel, params: Params) -> bool:
        """Whether a meta-batch's tasks run in ``vmap`` (``train.task_map``; ``auto``: a loop for
        first-order steps on CPU, vmap otherwise; see the module docstring)."""
        if not (self.vectorize and model.vmappable) or self.cfg.task_map == "loop":
            return False
        if self.cfg.task_map == "vmap":
            return True
        on_cpu = next(iter(params.values())).device.type == "cpu"
        return not (self.inner.first_order and on_cpu)

    def compiled_meta_loss(self) -> Callable[..., Tensor]:
        """The meta-loss with the vmapped chunk (:meth:`task_losses`) compiled: the chunking around
        it calls ``autograd.grad`` per chunk, which a compiled graph would break at anyway. Compiled,
        the tasks run in vmap unless ``train.task_map`` is ``loop``."""
        if self.vectorize and self.cfg.task_map != "loop":
            return partial(self._meta_loss, torch.compile(self.task_losses))
        return partial(self._meta_loss, partial(self.task_losses, vectorize=False))

    def _meta_loss(self, task_losses: Callable[..., Tensor], model: GenerativeModel, params: Params,
                   algo_params: dict[str, Tensor], ep: Episode, generator: torch.Generator | None) -> Tensor:
        noise_s, noise_q = draw_episode_noise(model, ep, self.inner, generator)
        lrs = inner_lrs(algo_params)

        def chunk_losses(sl: slice) -> Tensor:
            return task_losses(model, params, lrs, ep.support[sl], ep.support_mask[sl], ep.query[sl],
                               ep.query_mask[sl], noise_tasks(noise_s, sl),
                               None if noise_q is None else noise_q[sl])

        return chunked_task_mean(chunk_losses, ep.num_tasks, self.cfg.task_chunk,
                                 [*params.values(), *algo_params.values()])


class FOMAML(MAML):
    """First-order MAML: the inner gradients are constants in the meta-gradient."""

    name = "fomaml"
    first_order = True
