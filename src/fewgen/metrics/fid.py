"""FID and KID on the domain features of :mod:`fewgen.feature_net`, via torchmetrics.

- **FID** (Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local
  Nash Equilibrium", NeurIPS 2017): the Fréchet distance between Gaussians fitted to the real
  and the generated features, ``|mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))``.
- **KID** (Bińkowski et al., "Demystifying MMD GANs", ICLR 2018): the unbiased squared MMD
  with the cubic polynomial kernel ``(x.y / D + 1)^3``, averaged over random subsets.

Both are computed by torchmetrics (``FrechetInceptionDistance`` / ``KernelInceptionDistance``)
with a custom feature module in place of Inception: either the :class:`FeatureNet` itself
(:func:`fid_metric`, :func:`kid_metric`, :func:`fid`, :func:`kid` stream images through it),
or, when the features are already computed (the per-task figures of
:func:`fewgen.metrics.quality.quality_report`), an identity module over them
(:func:`fid_from_features`, :func:`kid_from_features`). :func:`frechet_distance` is an
independent pure-torch implementation for cross-checking.

Small sets: with n examples of D-dimensional features the covariance has rank < n, and FID is
biased upwards at small n (KID is unbiased). Compare figures only at equal sample sizes.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance



class GivenFeatures(nn.Module):
    """The identity over precomputed features ``(B, D)``: a torchmetrics custom feature module
    (``num_features`` tells FID its state size without a dummy forward)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, f: Tensor) -> Tensor:
        return f


def fid_metric(net: nn.Module) -> FrechetInceptionDistance:
    """torchmetrics' FID with ``net`` as the feature module; update it (under ``torch.no_grad``)
    with float images ``(B, C, S, S)`` in ``[0, 1]``: ``m.update(x, real=True)``.
    Note that the metric holds ``net`` as a sub-module, so ``m.to(device)`` moves ``net`` too."""
    return FrechetInceptionDistance(feature=net, normalize=True)


def kid_metric(net: nn.Module, subset_size: int = 100, subsets: int = 50) -> KernelInceptionDistance:
    """torchmetrics' KID with ``net`` as the feature module (see :func:`fid_metric`)."""
    with warnings.catch_warnings():  # "will save all extracted features in buffer": intended, they are small
        warnings.simplefilter("ignore", UserWarning)
        return KernelInceptionDistance(feature=net, subset_size=subset_size, subsets=subsets, normalize=True)


def _stream(metric: FrechetInceptionDistance | KernelInceptionDistance, real: Tensor, fake: Tensor,
            chunk: int) -> None:
    device = next(metric.inception.parameters(), torch.empty(0)).device
    with torch.no_grad():
        for x, is_real in ((real, True), (fake, False)):
            for i in range(0, len(x), chunk):
                metric.update(x[i : i + chunk].to(device), real=is_real)


def _kid_compute(metric: KernelInceptionDistance, seed: int) -> tuple[float, float]:
    # torchmetrics draws its subsets from the global generator: seed a private copy of it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def fid(real: Tensor, fake: Tensor, net: nn.Module, chunk: int = 256) -> float:
    """FID between real and generated images ``(N, C, S, S)`` / ``(M, C, S, S)`` (floats in
    ``[0, 1]``), streamed through torchmetrics with ``net`` as the feature module."""
    m = fid_metric(net)
    _stream(m, real, fake, chunk)
    return float(m.compute())


def kid(real: Tensor, fake: Tensor, net: nn.Module, subset_size: int = 100, subsets: int = 50,
        seed: int = 0, chunk: int = 256) -> tuple[float, float]:
    """KID (mean and standard deviation over ``subsets`` random subsets) between real and
    generated images, with ``net`` as torchmetrics' feature module. ``subset_size`` is
    capped at the smaller set's size."""
    m = kid_metric(net, min(subset_size, len(real), len(fake)), subsets)
    _stream(m, real, fake, chunk)
    return _kid_compute(m, seed)


def fid_from_features(real: Tensor, fake: Tensor) -> float:
    """FID between precomputed features ``(N, D)`` and ``(M, D)`` (torchmetrics; N, M >= 2)."""
    m = FrechetInceptionDistance(feature=GivenFeatures(real.shape[-1]))
    m.update(real.detach(), real=True)
    m.update(fake.detach(), real=False)
    return float(m.compute())


def kid_from_features(real: Tensor, fake: Tensor, subset_size: int = 100, subsets: int = 50,
                      seed: int = 0) -> tuple[float, float]:
    """KID (mean, std over subsets) between precomputed features (torchmetrics); ``subset_size``
    is capped at the smaller set's size (at least 2 are needed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        m = KernelInceptionDistance(feature=GivenFeatures(real.shape[-1]),
                                    subset_size=min(subset_size, len(real), len(fake)), subsets=subsets)
    m.update(real.detach(), real=True)
    m.update(fake.detach(), real=False)
    return _kid_compute(m, seed)


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to features ``(N, D)`` and ``(M, D)``, in float64.

    Pure torch, for cross-checking torchmetrics: the trace of the matrix square root is taken
    in the symmetric form ``Tr((S_r^(1/2) S_g S_r^(1/2))^(1/2))`` (two eigendecompositions of
    symmetric matrices; eigenvalues clipped at zero), so it is exact for a set against itself.
    """
    a, b = real.detach().double(), fake.detach().double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T, correction=1).reshape(a.shape[1], -1), torch.cov(b.T, correction=1).reshape(b.shape[1], -1)
    w, v = torch.linalg.eigh(cov_a)
    root_a = (v * w.clamp_min(0).sqrt()) @ v.T  # S_a^(1/2)
    mid = root_a @ cov_b @ root_a
    tr_root = torch.linalg.eigvalsh((mid + mid.T) / 2).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * tr_root)
