"""Pixel likelihoods (fewgen.models.pixels) and the image families on 8-bit colour."""

import math

import pytest
import torch

from fewgen.errors import ConfigError
from fewgen.models.image_diffusion import ImageDiffusion
from fewgen.models.image_vae import ImageVAE
from fewgen.models.pixels import (LEVELS, bits_per_dim, categorical_decoder_nll, levels, logistic_log_prob,
                                  resolve_pixels)


def all_levels() -> torch.Tensor:
    """(256, 1, 1, 1): every 8-bit level as a one-pixel image."""
    return (torch.arange(LEVELS, dtype=torch.float64) / (LEVELS - 1)).reshape(LEVELS, 1, 1, 1)


@pytest.mark.parametrize("mean,log_scale", [(0.5, -3.0), (0.0, -6.0), (1.0, -1.0), (0.3, -8.0), (1.7, 0.5)])
def test_discretised_logistic_sums_to_one(mean, log_scale):
    x = all_levels()
    lp = logistic_log_prob(torch.full_like(x, mean), torch.full_like(x, log_scale), x)
    assert torch.isfinite(lp).all()
    assert float(lp.exp().sum()) == pytest.approx(1.0, abs=1e-4)


def test_discretised_logistic_prefers_the_level_at_its_mean():
    x = all_levels()
    lp = logistic_log_prob(torch.full_like(x, 100 / 255), torch.full_like(x, -6.0), x)
    assert int(lp.argmax()) == 100


@pytest.mark.parametrize("eps", [0.0, 1.3, -2.5])
def test_categorical_decoder_is_a_distribution_over_levels(eps):
    """For one z_0, the probabilities of the 256 levels sum to one (the window drops nothing)."""
    a0, s0 = torch.tensor(math.cos(math.atan(math.exp(-6)))), torch.tensor(math.sin(math.atan(math.exp(-6))))
    x = all_levels()
    z0 = (a0 * (2 * 128 / 255 - 1) + s0 * eps) * torch.ones_like(x)
    p = (-categorical_decoder_nll(x, z0, a0, s0)).exp()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-6)
    # levels lie 2/255 * alpha_0 / sigma_0 = 3.17 noise units apart: the most probable is the nearest to z_0
    assert int(p.argmax()) == 128 + round(eps / 3.17)


def test_levels_and_bits():
    assert levels(torch.tensor([0.0, 0.6 / 255, 1.0, 1.2])).tolist() == [0, 1, 255, 255]
    assert bits_per_dim(3 * 4 * 4 * math.log(2) * 8, 48) == pytest.approx(8.0)


def test_auto_pixels_follow_channels():
    assert resolve_pixels("auto", 1) == "binary" and resolve_pixels("auto", 3) == "8bit"
    assert resolve_pixels("8bit", 1) == "8bit"
    with pytest.raises(ConfigError, match="model.extra.pixels"):
        resolve_pixels("16bit", 3)


def test_one_channel_models_store_no_pixels_key():
    """Checkpoints made before the key (one channel, Bernoulli) load and store as they were."""
    assert "pixels" not in ImageVAE(image_size=8, hidden=8, latent=4, context=8, features=8).config_dict()
    assert "pixels" not in ImageDiffusion(image_size=8, hidden=8, context=8, heads=1).config_dict()
    assert ImageVAE(image_size=8, channels=3, hidden=8, latent=4, context=8, features=8).config_dict()["pixels"] == "8bit"


@pytest.mark.parametrize("family", ["vae", "diffusion"])
def test_colour_models_score_8bit_data_and_sample_colour(family):
    torch.manual_seed(0)
    if family == "vae":
        m = ImageVAE(image_size=8, channels=3, hidden=8, latent=4, context=8, features=8, attention=True, heads=1)
    else:
        m = ImageDiffusion(image_size=8, channels=3, hidden=8, context=8, heads=1)
    x = levels(torch.rand(2, 3, 3, 8, 8)).float() / 255
    c = m.context(x[:, :2], torch.ones(2, 2, dtype=torch.bool))
    nll = m.nll(x, c, num_samples=4, chunk=2, generator=torch.Generator().manual_seed(0))
    assert nll.shape == (2, 3) and torch.isfinite(nll).all()
    # an 8-bit likelihood is of a discrete variable: every image's probability is at most one
    assert bool((nll > 0).all())
    loss = m.loss(x, c, m.draw_noise(x, torch.Generator().manual_seed(1)))
    loss.mean().backward()
    with torch.no_grad():
        s = m.sample(2, c, generator=torch.Generator().manual_seed(2))
    assert s.shape == (2, 2, 3, 8, 8) and float(s.min()) >= 0 and float(s.max()) <= 1
