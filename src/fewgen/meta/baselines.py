"""The baselines that meta-learning has to beat.

- **transfer**: pre-train *one unconditional* generator on all meta-train data (every example of
  every task in the meta-batch, support and query alike, with the empty-set context), then at
  test time fine-tune it on the K shots with the shared inner loop (:mod:`fewgen.meta.inner`).
  Standard transfer learning / fine-tuning as the baseline of few-shot generation papers (e.g.
  FIGR, Clouatre & Demers 2019).
- **scratch**: no training at all; at test time a freshly (seeded) initialised model is
  fine-tuned on the K shots only (:func:`fewgen.adaptation.adapter_for_checkpoint` with
  ``algo="scratch"``). There is nothing to meta-train, so it is not a :class:`MetaAlgorithm`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..models import GenerativeModel, Params
from ..tasks.base import Episode
from .base import MetaAlgorithm
from .inner import support_loss

SCRATCH_MESSAGE = ("--algo scratch needs no training: it is a fresh random init fine-tuned on the K shots at "
                   "test time. Evaluate it with `fewgen eval CKPT --algo scratch --steps 0,1,5,10` (any "
                   "checkpoint of the same model family supplies the architecture)")


class Transfer(MetaAlgorithm):
    """Maximum likelihood of one unconditional model on all examples of the meta-batch."""

    name = "transfer"

    def meta_loss(self, model: GenerativeModel, params: Params, algo_params: dict[str, Tensor], ep: Episode,
                  generator: torch.Generator) -> Tensor:
        x = torch.cat([ep.support, ep.query], 1)  # (T, K+Q, *X)
        present = torch.cat([ep.support_mask, ep.query_mask], 1)  # (T, K+Q)
        return support_loss(model, params, x, present, model.draw_noise(x, generator), conditional=False)


__all__ = ["SCRATCH_MESSAGE", "Transfer"]
