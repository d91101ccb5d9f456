import math

import pytest
import torch

from fewgen import checkpoint
from fewgen.config import Config, replace
from fewgen.models import build_model, call, params_of

torch.manual_seed(0)


def tiny(prior="mlp"):
    cfg = replace(Config(), model={"hidden": 8, "latent": 4, "context": 16, "extra": {"features": 32, "prior": prior}})
    return build_model(cfg.model, {"example_shape": [1, 28, 28]}), cfg


def data(T=3, K=4, N=5):
    g = torch.Generator().manual_seed(1)
    return (torch.rand(T, K, 1, 28, 28, generator=g) > 0.7).float(), (torch.rand(T, N, 1, 28, 28, generator=g) > 0.7).float()


@pytest.mark.parametrize("prior", ["mlp", "mixture"])
def test_functional_call_equals_module_call(prior):
    m, _ = tiny(prior)
    sup, x = data()
    mask = torch.ones(3, 4, dtype=torch.bool)
    p = params_of(m)
    c1, c2 = m.context(sup, mask), call(m, p, "context", sup, mask)
    assert torch.equal(c1, c2)
    noise = m.draw_noise(x, torch.Generator().manual_seed(0))
    assert torch.equal(m.loss(x, c1, noise), call(m, p, "loss", x, c1, noise))
    n1 = m.nll(x, c1, 20, 7, torch.Generator().manual_seed(2))
    n2 = call(m, p, "nll", x, c1, 20, 7, torch.Generator().manual_seed(2))
    assert torch.equal(n1, n2) and n1.shape == (3, 5)
    s1 = m.sample(6, c1, torch.Generator().manual_seed(3))
    assert torch.equal(s1, call(m, p, "sample", 6, c1, torch.Generator().manual_seed(3)))
    assert s1.shape == (3, 6, 1, 28, 28) and 0 <= s1.min() and s1.max() <= 1


def test_other_params_change_the_output():
    m, _ = tiny()
    sup, x = data()
    mask = torch.ones(3, 4, dtype=torch.bool)
    p = {k: v + 0.1 for k, v in params_of(m).items()}
    assert not torch.allclose(m.context(sup, mask), call(m, p, "context", sup, mask))


@pytest.mark.parametrize("prior", ["mlp", "mixture"])
def test_context_is_permutation_invariant_and_respects_mask(prior):
    m, _ = tiny(prior)
    sup, _ = data()
    mask = torch.ones(3, 4, dtype=torch.bool)
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.allclose(m.context(sup, mask), m.context(sup[:, perm], mask), atol=1e-5)
    half = mask.clone()
    half[:, 2:] = False
    junk = sup.clone()
    junk[:, 2:] = 1.0 - junk[:, 2:]  # masked shots must not matter
    assert torch.allclose(m.context(sup, half), m.context(junk, half), atol=1e-6)
    empty = m.context(sup[:, :0], mask[:, :0])
    none = m.context(sup, torch.zeros_like(mask))  # K slots, all absent: their shot entries are zero
    assert torch.allclose(empty, none[:, : empty.shape[1]], atol=1e-6) and not none[:, empty.shape[1]:].any()


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


def test_save_load_round_trip_is_exact(tmp_path):
    m, cfg = tiny()
    sup, x = data()
    checkpoint.save(tmp_path / "ck", m, cfg, {"algo": "amortized"}, {"ctx": torch.ones(2)})
    ck = checkpoint.load(tmp_path / "ck")
    assert ck.config == cfg and ck.extra["algo"] == "amortized" and torch.equal(ck.tensors["ctx"], torch.ones(2))
    for (k, v), (k2, v2) in zip(m.state_dict().items(), ck.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    mask = torch.ones(3, 4, dtype=torch.bool)
    m.eval()
    assert torch.equal(m.context(sup, mask), ck.model.context(sup, mask))


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
    other = c.clone()
    other[:, m.ctx :] = 0.0  # same learned vector, no template
    assert not torch.allclose(m.decode_logits(z, c[:, None]), m.decode_logits(z, other[:, None]))


def test_fusion_sampler_blends_the_support_posteriors_and_needs_shots():
    m, _ = tiny()
    sup, _ = data()
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1, 1:] = False
    c = m.context(sup, mask)
    mu_k, lv_k, present = m._support_latents(c)
    assert present.sum(1).tolist() == [4, 1, 4]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        m.decode_logits  # the decoder is shared by both samplers
        fused = m.sample(8, c, g, "fusion")
        prior = m.sample(8, c, torch.Generator().manual_seed(0), "prior")
    assert fused.shape == prior.shape == (3, 8, 1, 28, 28) and not torch.allclose(fused, prior)
    # One shot: every sample is drawn from that shot's posterior, whatever the absent slots hold.
    with torch.no_grad():
        lv_k[1].fill_(-30.0)  # a sharp posterior: every sample decodes that shot's mean latent
        c1 = c.clone()
        tail = c1[:, 16 + 28 * 28 :]
        tail[1, : 4 * 8] = torch.cat([mu_k[1], lv_k[1]], -1).reshape(-1)
        one = m.sample(5, c1, torch.Generator().manual_seed(1), "fusion")[1]
        want = torch.sigmoid(m.decode_logits(mu_k[1, :1].expand(5, 4), c1[1:2, None, :].expand(1, 5, -1)[0]))
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
    got = m._prior_log_prob(z, c[:, None, :])  # (3, 6)
    mu_p, lv_p = m._prior(c)
    mu_k, lv_k, present = m._support_latents(c)
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
    assert torch.allclose(m._prior_log_prob(z, e[:, None, :]),
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
        T = c.shape[0]
        tail = c[:, 16 + 28 * 28 :].clone()
        # Sharp, far-apart components: the shot's posterior at +50, the prior MLP's at its mean.
        shots = tail[:, : 4 * 8].reshape(T, 4, 8)
        shots[..., :4], shots[..., 4:] = 50.0, -20.0
        c = torch.cat([c[:, : 16 + 28 * 28], shots.reshape(T, -1), tail[:, 4 * 8 :]], -1)
        z = m.draw_latents(4000, c, torch.Generator().manual_seed(0))
    near_shot = (z[0] - 50.0).abs().max(-1).values < 1.0
    assert abs(float(near_shot.float().mean()) - 0.5) < 0.04  # 2 components in task 0
    assert abs(float(((z[2] - 50.0).abs().max(-1).values < 1.0).float().mean()) - 0.8) < 0.04  # 4 shots of 5
