import pytest
import torch

from fewgen import checkpoint
from fewgen.config import Config, replace
from fewgen.models import build_model, call, params_of

torch.manual_seed(0)


def tiny(prior="mlp"):
    cfg = replace(Config(), model={"hidden": 8, "latent": 4, "context": 16, "extra": {"features": 32, "prior": prior}})
    return build_model(cfg.model, {"example_shape": [1, 28, 28]}), cfg


PRIORS = ["mlp", "bayes"]


def data(T=3, K=4, N=5):
    g = torch.Generator().manual_seed(1)
    return (torch.rand(T, K, 1, 28, 28, generator=g) > 0.7).float(), (torch.rand(T, N, 1, 28, 28, generator=g) > 0.7).float()


@pytest.mark.parametrize("prior", PRIORS)
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


@pytest.mark.parametrize("prior", PRIORS)
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
    assert torch.allclose(empty, m.context(sup, torch.zeros_like(mask)), atol=1e-6)


@pytest.mark.parametrize("prior", PRIORS)
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


def test_bayes_prior_is_the_posterior_predictive_given_the_support_latents():
    """prior = bayes: m ~ N(mu_0, v_0) from the prior MLP, support latents z_k ~ N(m, s^2);
    p(z | support) = N(m_K, v_K + s^2) with 1/v_K = 1/v_0 + K/s^2, m_K = v_K (mu_0/v_0 + sum_k mu_k/s^2)."""
    m, _ = tiny("bayes")
    sup, _ = data()
    with torch.no_grad():
        m.log_spread.copy_(torch.tensor([-1.0, 0.0, 0.5, 1.0]))
        mask = torch.ones(3, 4, dtype=torch.bool)
        mask[1, 1:] = False
        c = m.context(sup, mask)
        mu_p, lv_p = m._prior(c)
        vec = c[:, :16]
        mu0, lv0 = m.prior(vec).chunk(2, -1)
        v0, s2 = lv0.clamp(-8, 6).exp(), m.log_spread.exp()
        mu_k, _ = m._posterior(m.features(sup), vec[:, None, :])  # (T, K, Z)
        for t in range(3):
            k = int(mask[t].sum())
            vk = 1.0 / (1.0 / v0[t] + k / s2)
            mk = vk * (mu0[t] / v0[t] + mu_k[t, mask[t]].sum(0) / s2)
            assert torch.allclose(mu_p[t], mk, atol=1e-5) and torch.allclose(lv_p[t], torch.log(vk + s2), atol=1e-5)
        # The empty support gives the prior MLP widened by s^2, the same for every task.
        ce = m.context(sup, torch.zeros_like(mask))
        mu_e, lv_e = m._prior(ce)
        mu0e, lv0e = m.prior(ce[:, :16]).chunk(2, -1)
        assert torch.allclose(mu_e, mu0e, atol=1e-6) and torch.allclose(mu_e[0], mu_e[1])
        assert torch.allclose(lv_e, torch.log(lv0e.clamp(-8, 6).exp() + s2), atol=1e-5)
