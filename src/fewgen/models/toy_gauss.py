"""A small exact-likelihood generator for low-dimensional data (the ``toy`` task families).

A diagonal Gaussian whose mean and log-scale are an MLP of the context; the context is a
Deep Sets encoding of the support (Zaheer et al. 2017; the set encoder of the Neural
Statistician, Edwards & Storkey 2017): per-shot embedding, masked mean, plus the log shot
count, then an MLP. The empty support gives the unconditional model. No latent variable, so
``loss`` and ``nll`` are the exact negative log-likelihood and :meth:`draw_noise` returns None.

The network works in standardised units: data are divided by ``scale`` (the data's marginal
standard deviation, known from the task family) before the encoder, and the Gaussian it outputs
is scaled back. This only reparameterises the model, but it keeps gradient magnitudes near
one, which is what lets a few SGD steps at a fixed inner learning rate fine-tune it stably.

Shapes: T tasks, K shots, N examples, D data dimensions.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..config import ModelConfig
from .base import Context, GenerativeModel, parse_extra
from .nn import masked_mean, mlp


class ToyGauss(GenerativeModel):
    """Set-conditioned diagonal Gaussian; implements the :mod:`fewgen.models.base` contract."""

    family = "toy_gauss"
    modality = "toy"

    def __init__(self, dim: int = 2, hidden: int = 32, context: int = 16, scale: float = 1.0) -> None:
        super().__init__()
        self.kwargs = dict(dim=dim, hidden=hidden, context=context, scale=scale)
        self.dim, self.scale = dim, float(scale)
        self.set_phi = mlp([dim, hidden, hidden])  # per-shot embedding before pooling
        self.set_rho = mlp([hidden + 1, hidden, context])  # pooled (+ log shot count) -> context
        self.head = mlp([context, hidden, 2 * dim])  # context -> (mean, log-scale)

    def config_dict(self) -> dict[str, Any]:
        return dict(self.kwargs)

    def _gaussian(self, context: Context) -> tuple[Tensor, Tensor]:
        """context -> mean (T,1,D), log-scale (T,1,D), in data units."""
        mu, log_scale = self.head(context["vec"])[:, None, :].chunk(2, -1)  # standardised units
        return self.scale * mu, log_scale.clamp(-7.0, 5.0) + math.log(self.scale)

    # ------------------------------------------------------------------ the contract
    def context(self, support: Tensor, mask: Tensor) -> Context:
        """support (T,K,D), mask (T,K) -> ``{"vec": (T,C)}``; K = 0 or no present shot -> unconditional."""
        pooled, count = masked_mean(self.set_phi(support / self.scale), mask)  # (T,H), (T,1)
        return {"vec": self.set_rho(torch.cat([pooled, torch.log1p(count)], -1))}

    def loss(self, x: Tensor, context: Context, noise: Tensor | None = None) -> Tensor:
        """Exact -log N(x; mu(c), diag sigma(c)^2) in nats, x (T,N,D) -> (T,N)."""
        mu, log_scale = self._gaussian(context)
        z = (x - mu) * torch.exp(-log_scale)
        return (0.5 * z**2 + log_scale + 0.5 * math.log(2 * math.pi)).sum(-1)

    def nll(self, x: Tensor, context: Context, num_samples: int = 1, chunk: int = 25,
            generator: torch.Generator | None = None) -> Tensor:
        """The exact NLL (no latent: ``num_samples`` and ``chunk`` are unused), (T,N)."""
        return self.loss(x, context)

    def sample(self, n: int, context: Context, generator: torch.Generator | None = None) -> Tensor:
        """n samples per task, (T,n,D)."""
        mu, log_scale = self._gaussian(context)
        eps = torch.randn(mu.shape[0], n, self.dim, generator=generator, device=mu.device)
        return mu + torch.exp(log_scale) * eps


def build_toy_gauss(cfg: ModelConfig, data_meta: dict[str, Any]) -> ToyGauss:
    """The ``toy_gauss`` family for toy vectors ``data_meta["example_shape"]`` = (D,), scaled to the
    data; it has no ``model.extra`` keys (:class:`~fewgen.models.base.NoExtra`)."""
    parse_extra(ToyGauss, cfg)
    scale = (data_meta.get("mean_scale", 1.0) ** 2 + data_meta.get("std", 0.0) ** 2) ** 0.5 or 1.0
    return ToyGauss(dim=int(data_meta["example_shape"][-1]), hidden=cfg.hidden, context=cfg.context, scale=scale)
