"""Reptile with an SGD or Adam inner loop, vectorised over tasks.

Nichol, Achiam & Schulman, "On First-Order Meta-Learning Algorithms" (2018); FIGR (Clouatre &
Demers 2019) used it to meta-train a GAN. Per task, fine-tune from ``theta`` on the support for
``train.inner_steps`` steps (``train.reptile_inner``: ``sgd``, or ``adam`` with beta1 = 0 and a
fresh state per task as in the paper), giving ``phi_t``; Reptile's meta-update is

    theta <- theta - epsilon * mean_t (theta - phi_t).

How it plugs into the generic training loop: :meth:`Reptile.meta_loss` returns a surrogate whose
gradient w.r.t. ``theta`` is exactly ``mean_t (theta - phi_t)``, namely
``0.5 * || theta - stopgrad(mean_t phi_t) ||^2`` summed over parameters, so the outer optimiser
(Adam in :mod:`fewgen.training`) plays the role of ``epsilon``; with plain SGD at learning rate
``epsilon`` it is literally the update above. The surrogate's *value* is replaced (a
straight-through sum) by the mean query loss after adaptation, so logs and meta-validation
report the same quantity as MAML's. The inner loop needs no graph, so it runs under
``no_grad`` (``torch.func.grad`` still computes the inner gradients), ``train.task_chunk``
tasks at a time.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..config import TrainConfig
from ..models import GenerativeModel, Params
from ..tasks.base import Episode
from .base import MetaAlgorithm
from .inner import draw_episode_noise, fine_tune_task, inner_config, map_tasks, noise_tasks, query_loss_task, task_chunks


class Reptile(MetaAlgorithm):
    """Reptile on an unconditional generator (the context of the empty set)."""

    name = "reptile"

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)  # config.validate refuses another train.reptile_inner and Meta-SGD (learn_inner_lr)
        self.inner = inner_config(cfg, training=True, first_order=True, optimizer=cfg.reptile_inner)
        self.vectorize = True  # False: a plain loop over tasks (the reference in the tests)

    def adapted(self, model: GenerativeModel, params: Params, ep: Episode, generator: torch.Generator
                ) -> tuple[Params, Tensor]:
        """Each task's fine-tuned parameters phi_t (T, ...) and query loss after adaptation (T,)."""
        noise_s, noise_q = draw_episode_noise(model, ep, self.inner, generator)
        return self._adapt(model, params, ep, noise_s, noise_q, slice(None))

    def _adapt(self, model: GenerativeModel, params: Params, ep: Episode, noise_s: dict[str, Tensor] | None,
               noise_q: Tensor | None, sl: slice) -> tuple[Params, Tensor]:
        """:meth:`adapted` for the tasks ``sl`` of the episode, with pre-drawn noise."""
        theta = {k: v.detach() for k, v in params.items()}

        def one(sup: Tensor, msk: Tensor, qry: Tensor, qmsk: Tensor, ns: dict[str, Tensor] | None, nq: Tensor | None
                ) -> tuple[Params, Tensor]:
            phi = fine_tune_task(model, theta, sup, msk, ns, self.inner)
            return phi, query_loss_task(model, phi, sup, msk, qry, nq, False, query_mask=qmsk)

        with torch.no_grad():
            return map_tasks(one, (ep.support[sl], ep.support_mask[sl], ep.query[sl], ep.query_mask[sl],
                                   noise_tasks(noise_s, sl), None if noise_q is None else noise_q[sl]),
                             (True,) * 6, self.vectorize and model.vmappable)

    def meta_loss(self, model: GenerativeModel, params: Params, algo_params: dict[str, Tensor], ep: Episode,
                  generator: torch.Generator) -> Tensor:
        # Tasks are adapted train.task_chunk at a time and only the running sum of phi_t is kept,
        # so memory holds one chunk's adapted parameters, not the meta-batch's.
        noise_s, noise_q = draw_episode_noise(model, ep, self.inner, generator)
        phi_sum: Params = {}
        losses = []
        for sl in task_chunks(ep.num_tasks, self.cfg.task_chunk):
            phis, query_losses = self._adapt(model, params, ep, noise_s, noise_q, sl)
            phi_sum = {k: phis[k].sum(0) + phi_sum[k] if phi_sum else phis[k].sum(0) for k in phis}
            losses.append(query_losses)
        mean_phi = {k: v / ep.num_tasks for k, v in phi_sum.items()}
        surrogate = sum(0.5 * (params[k] - mean_phi[k]).pow(2).sum() for k in params)  # grad: theta - mean phi
        return torch.cat(losses).mean() + (surrogate - surrogate.detach())
