import math

import pytest
import torch

from fewgen.config import Config, replace
from fewgen.models import build_model

torch.manual_seed(0)


def tiny(prior="mlp"):
    cfg = replace(Config(), model={"hidden": 8, "latent": 4, "context": 16, "extra": {"features": 32, "prior": prior}})
    return build_model(cfg.model, {"example_shape": [1, 28, 28]}), cfg


def data(T=3, K=4, N=5):
    g = torch.Generator().manual_seed(1)
    return (torch.rand(T, K, 1, 28, 28, generator=g) > 0.7).float(), (torch.rand(T, N, 1, 28, 28, generator=g) > 0.7).float()


@pytest.mark.parametrize("prior", ["mlp", "mixture"])
def test_empty_context_equals_all_absent_shots_whose_entries_are_zero(prior):
    # (permutation invariance and masked shots: tests/contract/test_contract.py)
    m, _ = tiny(prior)
    sup, _ = data()
    mask = torch.ones(3, 4, dtype=torch.bool)
    empty = m.context(sup[:, :0], mask[:, :0])
    none = m.context(sup, torch.zeros_like(mask))  # K slots, all absent: their shot entries are zero
    for k in ("vec", "mean_image"):
        assert torch.allclose(empty[k], none[k], atol=1e-6)
    assert empty["shot_mu"].shape == (3, 0, 4) and none["shot_mu"].shape == (3, 4, 4)
    assert not none["shot_mu"].any() and not none["shot_logvar"].any() and not none["shot_present"].any()


@pytest.mark.parametrize("prior", ["mlp", "mixture"])
def test_iwae_is_tighter_than_elbo(prior):
    m, _ = tiny(prior)
    sup, x = data()
    c = m.context(sup, torch.ones(3, 4, dtype=torch.bool))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        elbo = torch.stack([m.loss(x, c, m.draw_noise(x, g)) for _ in range(50)]).mean(0)
        iwae = m.nll(x, c, 200, 32, g)
    assert (iwae <= elbo + 1e-3).all()
    assert torch.isfinite(iwae).all()


def test_kl_weight_changes_the_training_loss_not_the_likelihood():
    m, _ = tiny()
    sup, x = data()
    mask = torch.ones(3, 4, dtype=torch.bool)
    heavy = type(m)(**{**m.config_dict(), "kl_weight": 3.0})
    heavy.load_state_dict(m.state_dict())
    c = m.context(sup, mask)
    noise = m.draw_noise(x, torch.Generator().manual_seed(0))
    assert (heavy.loss(x, c, noise) > m.loss(x, c, noise)).all()  # KL > 0 weighs more
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(heavy.nll(x, c, 10, 5, g1), m.nll(x, c, 10, 5, g2))  # the true bound either way


def test_support_template_reaches_the_decoder():
    m, _ = tiny()
    sup, _ = data()
    mask = torch.ones(3, 4, dtype=torch.bool)
    c = m.context(sup, mask)
    z = torch.zeros(3, 1, m.latent)
    other = {**c, "mean_image": torch.zeros_like(c["mean_image"])}  # same learned vector, no template
    assert not torch.allclose(m.decode_logits(z, m._per_example(c)), m.decode_logits(z, m._per_example(other)))


def test_fusion_sampler_blends_the_support_posteriors_and_needs_shots():
    m, _ = tiny()
    sup, _ = data()
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1, 1:] = False
    c = m.context(sup, mask)
    mu_k, lv_k, present = c["shot_mu"], c["shot_logvar"], c["shot_present"]
    assert present.sum(1).tolist() == [4, 1, 4]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        m.decode_logits  # the decoder is shared by both samplers
        fused = m.sample(8, c, g, "fusion")
        prior = m.sample(8, c, torch.Generator().manual_seed(0), "prior")
    assert fused.shape == prior.shape == (3, 8, 1, 28, 28) and not torch.allclose(fused, prior)
    # One shot: every sample is drawn from that shot's posterior, whatever the absent slots hold.
    with torch.no_grad():
        c1 = {**c, "shot_logvar": lv_k.clone()}
        c1["shot_logvar"][1].fill_(-30.0)  # a sharp posterior: every sample decodes that shot's mean latent
        one = m.sample(5, c1, torch.Generator().manual_seed(1), "fusion")[1]
        want = torch.sigmoid(m.decode_logits(mu_k[1, :1].expand(5, 4), {k: v[1:2] for k, v in c1.items()}))
    assert torch.allclose(one, want.reshape(5, 1, 28, 28), atol=1e-5)
    # Without shots (the unconditional context) fusion falls back to the prior sampler.
    e = m.context(sup[:, :0], mask[:, :0])
    assert torch.equal(m.sample(4, e, torch.Generator().manual_seed(2), "fusion"),
                       m.sample(4, e, torch.Generator().manual_seed(2), "prior"))


def test_mixture_prior_is_the_equal_mixture_of_the_prior_mlp_and_one_gaussian_per_shot():
    m, _ = tiny("mixture")
    sup, _ = data()
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1, 2:] = False
    c = m.context(sup, mask)
    z = torch.randn(3, 6, 4, generator=torch.Generator().manual_seed(0))
    got = m._prior_log_prob(z, m._per_example(c))  # (3, 6)
    mu_p, lv_p = m._prior(c)
    mu_k, lv_k, present = c["shot_mu"], c["shot_logvar"], c["shot_present"]
    s2 = m.log_spread.exp()
    for t in range(3):
        dens = [torch.distributions.Normal(mu_p[t], (0.5 * lv_p[t]).exp()).log_prob(z[t]).sum(-1)]
        for k in range(4):
            if present[t, k]:
                sd = (lv_k[t, k].exp() + s2).sqrt()
                dens.append(torch.distributions.Normal(mu_k[t, k], sd).log_prob(z[t]).sum(-1))
        want = torch.logsumexp(torch.stack(dens), 0) - math.log(len(dens))
        assert len(dens) == 1 + int(mask[t].sum())
        assert torch.allclose(got[t], want, atol=1e-4)
    # The unconditional context has the prior MLP's component only.
    e = m.context(sup[:, :0], mask[:, :0])
    mu_e, lv_e = m._prior(e)
    assert torch.allclose(m._prior_log_prob(z, m._per_example(e)),
                          torch.distributions.Normal(mu_e[:, None], (0.5 * lv_e[:, None]).exp()).log_prob(z).sum(-1),
                          atol=1e-5)


def test_mixture_prior_sampler_picks_components_uniformly():
    m, _ = tiny("mixture")
    sup, _ = data()
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[0, 1:] = False  # task 0: the MLP's component and one shot's
    with torch.no_grad():
        m.log_spread.fill_(-20.0)
        c = m.context(sup, mask)
        # Sharp, far-apart components: the shot's posterior at +50, the prior MLP's at its mean.
        c = {**c, "shot_mu": torch.full_like(c["shot_mu"], 50.0), "shot_logvar": torch.full_like(c["shot_logvar"], -20.0)}
        z = m.draw_latents(4000, c, torch.Generator().manual_seed(0))
    near_shot = (z[0] - 50.0).abs().max(-1).values < 1.0
    assert abs(float(near_shot.float().mean()) - 0.5) < 0.04  # 2 components in task 0
    assert abs(float(((z[2] - 50.0).abs().max(-1).values < 1.0).float().mean()) - 0.8) < 0.04  # 4 shots of 5
