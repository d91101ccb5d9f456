"""Pixel likelihoods: what an image family's ``nll`` counts a pixel's value as.

Images enter every family as floats in [0, 1] (ink = 1). Two kinds of data, one key
(``model.extra.pixels``) in both image families:

- ``binary``: each value is the probability of ink, scored by a Bernoulli cross-entropy (exact
  for binary data such as Omniglot; for grey levels the soft-target convention of binarised-MNIST
  papers). The likelihood every Omniglot and glyph figure in this project uses.
- ``8bit``: each value is one of the 256 levels ``k / 255`` of an 8-bit channel (colour photos,
  icons), scored by a proper discrete distribution over those levels, so ``nll`` is in nats per
  image of 8-bit data and :func:`bits_per_dim` gives the bits per sub-pixel of the literature
  (PixelCNN++, VDM). The VAE's decoder is a discretised logistic per sub-pixel (Salimans et al.
  2017, "PixelCNN++"), the diffusion model's bound ends in VDM's categorical decoder over the
  levels (Kingma et al. 2021).
- ``auto`` (the default): ``binary`` for one channel, ``8bit`` for three; checkpoints made before
  the key (one channel) load as they were.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError

PIXELS = ("auto", "binary", "8bit")
LEVELS = 256  # the levels of an 8-bit channel
WINDOW = 4  # levels either side that the diffusion decoder's normaliser sums over (beyond: < e^-80)


def resolve_pixels(pixels: str, channels: int) -> str:
    """``model.extra.pixels`` for images of ``channels`` channels: ``auto`` -> binary for one
    channel, 8bit otherwise; a ConfigError (one line) for an unknown value."""
    if pixels not in PIXELS:
        raise ConfigError(f"model.extra.pixels must be auto, binary or 8bit, got {pixels!r}")
    if pixels == "auto":
        return "binary" if channels == 1 else "8bit"
    return pixels


def stored_pixels(pixels: str, channels: int) -> tuple[str, dict[str, str]]:
    """``model.extra.pixels`` resolved for images of ``channels`` channels, and the constructor
    arguments a model stores for it: none for a one-channel binary model (every checkpoint made
    before the key, so they load and store as they were)."""
    resolved = resolve_pixels(pixels, channels)
    return resolved, ({} if resolved == "binary" and channels == 1 else {"pixels": resolved})


def levels(x: Tensor) -> Tensor:
    """Values in [0, 1] -> their 8-bit level k in 0..255 (long), rounding to the nearest."""
    return (x.clamp(0, 1) * (LEVELS - 1)).round().long()


def bernoulli_log_prob(logits: Tensor, x: Tensor) -> Tensor:
    """log p(x | logits) summed over the last three axes (C, S, S); x may be soft (cross-entropy)."""
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").flatten(-3).sum(-1)


def logistic_log_prob(mean: Tensor, log_scale: Tensor, x: Tensor) -> Tensor:
    """The discretised logistic (PixelCNN++) log-probability of x's 8-bit levels, summed over the
    last three axes. ``mean``, ``log_scale`` and x broadcast; mean and x are in [0, 1] units, the
    level k owns [k - 1/2, k + 1/2] / 255, and the end levels own the tails (so the 256
    probabilities sum to one)."""
    k = levels(x.expand_as(mean)).to(mean.dtype)
    half = 0.5 / (LEVELS - 1)
    log_scale = log_scale.clamp_min(-7.0)
    inv_s = torch.exp(-log_scale)
    centre = k / (LEVELS - 1) - mean
    up, down = (centre + half) * inv_s, (centre - half) * inv_s
    log_cdf_up = F.logsigmoid(up)  # log P(X <= upper edge)
    log_sf_down = F.logsigmoid(-down)  # log P(X > lower edge)
    # log(sigmoid(up) - sigmoid(down)) computed stably; where the bin is far in a tail the
    # difference underflows and the density at the centre times the bin width stands in for it.
    mid = centre * inv_s
    log_pdf_mid = mid - log_scale - 2 * F.softplus(mid) + math.log(2 * half)
    diff = torch.sigmoid(up) - torch.sigmoid(down)
    inner = torch.where(diff > 1e-5, torch.log(diff.clamp_min(1e-12)), log_pdf_mid)
    out = torch.where(k == 0, log_cdf_up, torch.where(k == LEVELS - 1, log_sf_down, inner))
    return out.flatten(-3).sum(-1)


def split_logistic(out: Tensor, channels: int) -> tuple[Tensor, Tensor]:
    """A decoder output (..., 2C, S, S) -> the logistic's mean and log-scale (..., C, S, S) each."""
    return out[..., :channels, :, :], out[..., channels:, :, :]


def decoder_log_prob(pixels: str, out: Tensor, x: Tensor, channels: int) -> Tensor:
    """log p(x | a decoder's output) summed over (C, S, S): ``out`` is (..., C, S, S) Bernoulli
    logits for ``binary``, (..., 2C, S, S) logistic means and log-scales for ``8bit``."""
    if pixels == "binary":
        return bernoulli_log_prob(out, x)
    return logistic_log_prob(*split_logistic(out, channels), x)


def decoder_mean(pixels: str, out: Tensor, channels: int) -> Tensor:
    """A decoder's output -> its mean image in [0, 1] (what samples show): the ink probability for
    ``binary``; the logistic's mean, clipped to the data range, for ``8bit``."""
    if pixels == "binary":
        return torch.sigmoid(out)
    return split_logistic(out, channels)[0].clamp(0, 1)


def categorical_decoder_nll(x: Tensor, z0: Tensor, alpha0: Tensor, sigma0: Tensor) -> Tensor:
    """VDM's decoder at t = 0 for 8-bit data, -log p(x | z_0) summed over (C, S, S): the level k
    has probability proportional to N(z_0; alpha_0 x_k, sigma_0^2), x_k = 2k/255 - 1, normalised
    over the 256 levels. At the schedule's end (sigma_0 / alpha_0 = e^-6) levels more than
    :data:`WINDOW` away from x's own are below e^-80 of it, so the normaliser sums over that
    window (memory: 2*WINDOW + 1 values per sub-pixel, not 256)."""
    k = levels(x)
    offsets = torch.arange(-WINDOW, WINDOW + 1, device=x.device)
    kj = k[..., None] + offsets  # (..., 2W+1)
    xj = 2 * kj.to(z0.dtype) / (LEVELS - 1) - 1
    logits = -0.5 * ((z0[..., None] - alpha0 * xj) / sigma0).square()
    logits = logits.masked_fill((kj < 0) | (kj > LEVELS - 1), float("-inf"))
    own = logits[..., WINDOW]
    return -(own - torch.logsumexp(logits, -1)).flatten(-3).sum(-1)


def bits_per_dim(nats: float, dims: int) -> float:
    """Nats per image -> bits per sub-pixel (``dims`` = C * S * S)."""
    return nats / (dims * math.log(2))
