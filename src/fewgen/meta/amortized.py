"""Amortized (set-conditioned) meta-generation: adaptation is one forward pass.

Neural Statistician (Edwards & Storkey 2017): the model encodes the support set into a
context and is trained to maximise the ELBO of the query examples given that context.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..models import GenerativeModel, Params, call
from ..tasks.base import Episode
from .base import MetaAlgorithm, query_mean


class Amortized(MetaAlgorithm):
    """Context from the support, negative ELBO (or exact NLL) on the present queries (the model's
    :meth:`~fewgen.models.base.GenerativeModel.episode_loss`)."""

    name = "amortized"

    def meta_loss(self, model: GenerativeModel, params: Params, algo_params: dict[str, Tensor], ep: Episode,
                  generator: torch.Generator) -> Tensor:
        noise = model.draw_noise(ep.query, generator)
        # The mean over every present query of the meta-batch (tasks with few examples have fewer).
        loss = call(model, params, "episode_loss", ep.support, ep.support_mask, ep.query, noise)  # (T,Q)
        return query_mean(loss, ep.query_mask)
