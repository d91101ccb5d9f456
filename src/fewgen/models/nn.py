"""Shared building blocks (one place, reused by every family)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .task_conv import TaskConv2d, TaskConvTranspose2d


def mlp(sizes: list[int], act: type[nn.Module] = nn.SiLU) -> nn.Sequential:
    """Linear layers with activations between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def norm_mlp(inp: int, hidden: int, out: int) -> nn.Sequential:
    """Linear -> LayerNorm -> GELU -> Linear: one hidden layer, normalised (sequence models)."""
    return nn.Sequential(nn.Linear(inp, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, out))


class LayerNorm(nn.Module):
    """Layer normalisation over the last axis (Ba et al. 2016), written out. Measured with torch
    2.13 on CPU: ``F.layer_norm``'s second-order gradient is wrong when taken by autograd
    through ``vmap(torch.func.grad(...))`` (MAML's vectorised meta-gradient; off by 10-100% on
    a toy net, exact in a plain loop); these plain tensor ops are exact both ways. Same
    parameter names as ``nn.LayerNorm``."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        mu = x.mean(-1, keepdim=True)
        var = (x - mu).pow(2).mean(-1, keepdim=True)
        return (x - mu) * torch.rsqrt(var + self.eps) * self.weight + self.bias


def masked_mean(h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean of ``h`` (T,K,F) over the present shots ``mask`` (T,K); zeros for an empty set.

    Returns the mean (T,F) and the count (T,1). Mean pooling makes the set encoder
    permutation invariant (Deep Sets; Neural Statistician, Edwards & Storkey 2017).
    """
    m = mask.to(h.dtype).unsqueeze(-1)  # (T,K,1)
    count = m.sum(1)  # (T,1)
    return (h * m).sum(1) / count.clamp_min(1.0), count


def canonical_order(key: Tensor, mask: Tensor) -> Tensor:
    """The order (T, K) that puts each task's shots in a canonical order: present ones (``mask``
    (T, K)) first, by ascending ``key`` (T, K), absent ones last; stable. A context stored in it
    does not depend on the order the support came in."""
    key = torch.where(mask, key, torch.full_like(key, float("inf")))
    return torch.sort(key, dim=1, stable=True).indices


def gaussian_kl(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """KL(N(mu_q, var_q) || N(mu_p, var_p)) summed over the last axis."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1.0).sum(-1)


def gaussian_log_prob(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, exp(logvar)) summed over the last axis."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / logvar.exp()).sum(-1)


def conv_block(cin: int, cout: int, stride: int, groups: int = 8) -> nn.Sequential:
    """Conv -> GroupNorm -> SiLU (GroupNorm, not BatchNorm: no state shared across tasks).

    A stride-1 block's 3x3 convolution is a :class:`~fewgen.models.task_conv.TaskConv2d`: with
    per-task weights under vmap it runs 1.5-1.8x faster so (second-order MAML, 33 -> 32 channels
    at 28x28); the stride-2 4x4 ones gain 1.0-1.2x, less than the task convolution's Python
    overhead costs in a whole step, and stay torch's (``benchmarks/grouped_conv.py --per-layer``)."""
    conv = TaskConv2d if stride == 1 else nn.Conv2d
    return nn.Sequential(
        conv(cin, cout, 4 if stride == 2 else 3, stride, 1),
        nn.GroupNorm(min(groups, cout), cout), nn.SiLU(),
    )


def deconv_block(cin: int, cout: int, groups: int = 8) -> nn.Sequential:
    """Transposed conv (x2 upsampling) -> GroupNorm -> SiLU; the transposed convolution is a
    :class:`~fewgen.models.task_conv.TaskConvTranspose2d` (1.0-1.3x per layer under vmap with
    per-task weights; the image VAE's meta-step gained with it)."""
    return nn.Sequential(TaskConvTranspose2d(cin, cout, 4, 2, 1), nn.GroupNorm(min(groups, cout), cout), nn.SiLU())
