"""Contract (v2) and schedule / sampler tests of the set-conditioned diffusion family."""

import math

import pytest
import torch
from torch.utils._pytree import tree_map

from fewgen import checkpoint
from fewgen.adaptation import adapt
from fewgen.config import Config, apply_overrides, replace
from fewgen.errors import ConfigError, FewgenError
from fewgen.models import build_model, call, params_of
from fewgen.models.diffusion_sampler import ddim_loop, guided_v
from fewgen.models.image_diffusion import LOGSNR_MAX, LOGSNR_MIN

torch.manual_seed(0)


def tiny(size=8, channels=1, **extra):
    cfg = replace(Config(), data={"image_size": size},
                  model={"family": "image_diffusion", "hidden": 8, "context": 16, "extra": extra})
    return build_model(cfg.model, {"example_shape": [channels, size, size], "modality": "image"}), cfg


def perturbed(m, scale=0.3, seed=0):
    """The model with every parameter moved at random: the zero-initialised output layers no
    longer hide the support (a fresh model ignores it exactly)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return m


def data(T=3, K=4, N=5, size=8, channels=1):
    g = torch.Generator().manual_seed(1)
    sup = (torch.rand(T, K, channels, size, size, generator=g) > 0.6).float()
    return sup, (torch.rand(T, N, channels, size, size, generator=g) > 0.6).float()


def test_functional_call_equals_module_call_and_sample_shapes():
    m, _ = tiny()
    perturbed(m)
    sup, x = data()
    mask = torch.ones(3, 4, dtype=torch.bool)
    p = params_of(m)
    c1, c2 = m.context(sup, mask), call(m, p, "context", sup, mask)
    assert set(c1) == {"tokens", "mask", "mean", "shots", "shot_present"} and all(torch.equal(c1[k], c2[k]) for k in c1)
    assert c1["tokens"].shape == (3, 1 + 4 * 4, 16) and c1["mask"].dtype == torch.bool
    noise = m.draw_noise(x, torch.Generator().manual_seed(0))
    assert noise.shape == (3, 5, 2 + 64)
    assert torch.equal(m.loss(x, c1, noise), call(m, p, "loss", x, c1, noise))
    n1 = m.nll(x, c1, 6, 4, torch.Generator().manual_seed(2))
    assert torch.equal(n1, call(m, p, "nll", x, c1, 6, 4, torch.Generator().manual_seed(2))) and n1.shape == (3, 5)
    for kw in ({}, {"guidance": 2.0, "steps": 3, "sampler": "ddpm"}, {"strength": 0.5, "steps": 4}):
        s1 = m.sample(6, c1, torch.Generator().manual_seed(3), **kw)
        assert torch.equal(s1, call(m, p, "sample", 6, c1, torch.Generator().manual_seed(3), **kw))
        assert s1.shape == (3, 6, 1, 8, 8) and s1.dtype == torch.float32 and 0 <= s1.min() and s1.max() <= 1


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_sampling_is_seeded(sampler):
    m, _ = tiny()
    perturbed(m)
    sup, _ = data()
    c = m.context(sup, torch.ones(3, 4, dtype=torch.bool))
    with torch.no_grad():
        a, b = (m.sample(4, c, torch.Generator().manual_seed(7), steps=4, sampler=sampler) for _ in range(2))
        other = m.sample(4, c, torch.Generator().manual_seed(8), steps=4, sampler=sampler)
    assert torch.equal(a, b) and not torch.allclose(a, other)


def test_save_load_round_trip_is_exact(tmp_path):
    m, cfg = tiny(size=12, channels=3, p_uncond=0.3, heads=2, template=False)
    perturbed(m)
    sup, _ = data(size=12, channels=3)
    checkpoint.save(tmp_path / "ck", m, cfg, {"algo": "amortized"})
    ck = checkpoint.load(tmp_path / "ck")
    assert ck.config == cfg and ck.model.config_dict() == m.config_dict()
    for (k, v), (k2, v2) in zip(m.state_dict().items(), ck.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    mask = torch.ones(3, 4, dtype=torch.bool)
    c = m.context(sup, mask)
    with torch.no_grad():
        assert torch.equal(m.sample(2, c, torch.Generator().manual_seed(0), steps=3),
                           ck.model.sample(2, c, torch.Generator().manual_seed(0), steps=3))


def test_denoiser_is_invariant_to_shot_order_and_ignores_masked_shots():
    m, _ = tiny()
    perturbed(m)
    sup, x = data()
    mask = torch.ones(3, 4, dtype=torch.bool)
    noise = m.draw_noise(x, torch.Generator().manual_seed(0))
    noise[..., 1] = 5.0  # no support dropped
    base = m.loss(x, m.context(sup, mask), noise)
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.allclose(base, m.loss(x, m.context(sup[:, perm], mask), noise), rtol=1e-5, atol=1e-4)
    half = mask.clone()
    half[:, 2:] = False
    junk = sup.clone()
    junk[:, 2:] = 1.0 - junk[:, 2:]
    assert torch.allclose(m.loss(x, m.context(sup, half), noise), m.loss(x, m.context(junk, half), noise), atol=1e-5)
    assert not torch.allclose(base, m.loss(x, m.context(sup, half), noise), atol=1e-3)  # the shots do matter
    # The empty set (K = 0), every slot masked, and a dropped support are one and the same model.
    empty = m.loss(x, m.context(sup[:, :0], mask[:, :0]), noise)
    assert torch.allclose(empty, m.loss(x, m.context(sup, torch.zeros_like(mask)), noise), atol=1e-5)
    dropped = noise.clone()
    dropped[..., 1] = -5.0  # every support dropped (classifier-free guidance training)
    assert torch.allclose(empty, m.loss(x, m.context(sup, mask), dropped), atol=1e-5)


def test_schedule_ends_and_the_loss_at_t_near_0_and_1():
    m, _ = tiny()
    t = torch.tensor([0.0, 0.5, 1.0])
    a, s = m.alpha_sigma(t)
    assert torch.allclose(a**2 + s**2, torch.ones(3))
    logsnr = torch.log(a**2 / s**2)
    assert torch.allclose(logsnr[[0, 2]], torch.tensor([LOGSNR_MAX, LOGSNR_MIN]), atol=1e-3) and abs(logsnr[1]) < 1e-4
    assert s[0] < 3e-3 and a[2] < 3e-3  # t = 0 is (almost) the data, t = 1 (almost) pure noise
    # A fresh model predicts v = 0 (zero output layer), so its loss is 0.5 ||v||^2 with
    # v = alpha eps - sigma x: about ||eps||^2 / 2 at t -> 0 and ||2x - 1||^2 / 2 at t -> 1.
    sup, x = data()
    c = m.context(sup, torch.ones(3, 4, dtype=torch.bool))
    noise = m.draw_noise(x, torch.Generator().manual_seed(0))
    eps, x0 = noise[..., 2:], (2 * x - 1).flatten(2)
    for q, tt in ((-9.0, 0.0), (9.0, 1.0)):  # normal quantiles of t = 1e-19 and 1 - 1e-19
        noise[..., 0] = q
        a_t, s_t = m.alpha_sigma(torch.tensor(tt))
        assert torch.allclose(m.loss(x, c, noise), 0.5 * (a_t * eps - s_t * x0).square().sum(-1), rtol=1e-4)
    noise[..., 0] = -9.0
    assert torch.allclose(m.loss(x, c, noise), 0.5 * eps.square().sum(-1), rtol=0.03)
    noise[..., 0] = 9.0
    assert torch.allclose(m.loss(x, c, noise), 0.5 * x0.square().sum(-1), rtol=0.03)


def test_ddim_with_the_true_noise_recovers_x0():
    m, _ = tiny()
    x0 = 2 * data()[1][:, :2] - 1  # (3, 2, 1, 8, 8) in {-1, 1}
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))

    def true_v(z, t):  # the v of the true x0 and the true noise
        a, s = m.alpha_sigma(t)
        return a * eps - s * x0

    a1, s1 = m.alpha_sigma(torch.tensor(1.0))
    got = ddim_loop(m.alpha_sigma, a1 * x0 + s1 * eps, true_v, steps=7, eta=0.0, generator=None)
    assert torch.allclose(got, x0, atol=1e-5)

    # One training image: its denoiser is exact, x_hat = x0, and DDIM lands on it from any noise.
    def one_image_v(z, t):
        a, s = m.alpha_sigma(t)
        return (a * z - x0) / s

    start = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(ddim_loop(m.alpha_sigma, start, one_image_v, steps=5, eta=0.0, generator=None), x0, atol=1e-5)


def test_guidance_zero_is_the_unconditional_model_and_guidance_mixes_linearly():
    m, _ = tiny()
    perturbed(m)
    sup, _ = data()
    mask = torch.ones(3, 4, dtype=torch.bool)
    c, e = m.context(sup, mask), m.context(sup[:, :0], mask[:, :0])
    with torch.no_grad():
        zero = m.sample(4, c, torch.Generator().manual_seed(0), guidance=0.0, steps=4)
        uncond = m.sample(4, e, torch.Generator().manual_seed(0), guidance=1.0, steps=4)
        cond = m.sample(4, c, torch.Generator().manual_seed(0), guidance=1.0, steps=4)
        z, t = torch.randn(3, 4, 1, 8, 8), torch.tensor(0.6)
        v0, v1, v3 = (guided_v(m._v_clamped, z, t, c, w) for w in (0.0, 1.0, 3.0))
    assert torch.allclose(zero, uncond, atol=1e-6) and not torch.allclose(zero, cond, atol=1e-3)
    assert torch.allclose(v3, v0 + 3.0 * (v1 - v0), atol=1e-4)


def test_nll_is_a_finite_positive_bound_that_depends_on_the_data():
    m, _ = tiny()
    perturbed(m, 0.1)
    sup, x = data()
    c = m.context(sup, torch.ones(3, 4, dtype=torch.bool))
    with torch.no_grad():
        a = m.nll(x, c, 8, 3, torch.Generator().manual_seed(0))
        b = m.nll(x, c, 8, 3, torch.Generator().manual_seed(0))
        flipped = m.nll(1 - x, c, 8, 3, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.isfinite(a).all() and (a > 0).all() and not torch.allclose(a, flipped)


def test_nan_during_sampling_is_a_clear_error():
    m, _ = tiny()
    sup, _ = data()
    with torch.no_grad():
        m.out.bias.fill_(float("nan"))
        c = m.context(sup, torch.ones(3, 4, dtype=torch.bool))
        with pytest.raises(FewgenError, match="NaN"):
            m.sample(2, c, torch.Generator().manual_seed(0), steps=3)


def test_vmapped_fine_tuning_equals_the_loop():
    m, _ = tiny()
    perturbed(m, 0.1)
    sup, _ = data()
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1, 2:] = False
    a = adapt(m, sup, mask, steps=2, lr=1e-3, vectorize=True)
    b = adapt(m, sup, mask, steps=2, lr=1e-3, vectorize=False)
    assert all(torch.allclose(a.params[k], b.params[k], atol=1e-5) for k in a.params)
    assert all(torch.allclose(a.context[k].float(), b.context[k].float(), atol=1e-5) for k in a.context)
    assert not torch.allclose(a.params["out.bias"][0], params_of(m)["out.bias"])  # it did fine-tune


def test_bf16_autocast_loss_is_finite():
    m, _ = tiny()
    sup, x = data()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        c = m.context(sup, torch.ones(3, 4, dtype=torch.bool))
        loss = m.loss(x, c, m.draw_noise(x, torch.Generator().manual_seed(0)))
    assert torch.isfinite(loss).all()


@pytest.mark.parametrize("override, message", [
    ("eval.guidance=-1", "eval.guidance' must be at least 0"),
    ("eval.guidance=50", "eval.guidance' must be at most 20"),
    ("eval.sample_steps=0", "eval.sample_steps' must be at least 1"),
    ("eval.sampler=euler", "eval.sampler' must be ddim or ddpm"),
])
def test_bad_sampler_settings_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), [override])


@pytest.mark.parametrize("extra, shape, message", [
    ({"p_uncond": 1.0}, [1, 28, 28], "p_uncond must be a number in"),
    ({"heads": 3}, [1, 28, 28], "heads must be a positive integer dividing"),
    ({"dropout": 0.1}, [1, 28, 28], "unknown config key 'model.extra.dropout'"),
    ({}, [1, 30, 30], "divisible by 4"),
])
def test_bad_model_settings_are_one_line_config_errors(extra, shape, message):
    cfg = replace(Config(), model={"family": "image_diffusion", "extra": extra})
    with pytest.raises(ConfigError, match=message):
        build_model(cfg.model, {"example_shape": shape, "modality": "image"})
    assert "\n" not in message


def test_guided_sampling_runs_through_a_pytree_context_slice():
    m, _ = tiny()
    sup, _ = data()
    c = m.context(sup, torch.ones(3, 4, dtype=torch.bool))
    one = tree_map(lambda v: v[1:2], c)
    with torch.no_grad():
        s = m.sample(3, one, torch.Generator().manual_seed(0), guidance=1.5, steps=2)
    assert s.shape == (1, 3, 1, 8, 8) and math.isfinite(float(s.sum()))


def test_shot_template_with_one_shot_is_the_mean_template_and_a_mixture_over_several():
    shot, _ = tiny(template="shot")
    mean, _ = tiny(template=True)
    perturbed(shot, 0.1)
    mean.load_state_dict(shot.state_dict())  # the same weights: one shot's mean image is the shot
    sup, x = data()
    one = torch.zeros(3, 4, dtype=torch.bool)
    one[:, 2] = True
    g = torch.Generator().manual_seed(0)
    noise = shot.draw_noise(x, g)
    assert noise.shape[-1] == 3 + 64
    cs, cm = shot.context(sup, one), mean.context(sup, one)
    with torch.no_grad():
        assert torch.allclose(shot.loss(x, cs, noise), mean.loss(x, cm, torch.cat([noise[..., :2], noise[..., 3:]], -1)),
                              atol=1e-5)
        assert torch.allclose(shot.nll(x, cs, 6, 3, torch.Generator().manual_seed(1)),
                              mean.nll(x, cm, 6, 3, torch.Generator().manual_seed(1)), atol=1e-4)
        full = shot.context(sup, torch.ones(3, 4, dtype=torch.bool))
        mix = shot.nll(x, full, 6, 3, torch.Generator().manual_seed(1))
        per = torch.stack([shot._bound(x, {**full, "pick": torch.full((3, 5), k)}, 6, 3, torch.Generator().manual_seed(1))
                           for k in range(4)], -1)
    # -log mean_k exp(-B_k): between the best shot's bound and the best plus log K
    best = per.min(-1).values
    assert (mix >= best - 1e-4).all() and (mix <= best + math.log(4) + 1e-4).all()
    assert torch.allclose(mix, -torch.logsumexp(-per, -1) + math.log(4), atol=1e-4)


def test_shot_template_samples_pick_present_shots_in_an_order_free_way():
    m, _ = tiny(template="shot")
    perturbed(m, 0.3)
    sup, _ = data()
    mask = torch.tensor([[True, False, True, False]] * 3)
    perm = torch.tensor([3, 2, 1, 0])
    c, cp = m.context(sup, mask), m.context(sup[:, perm], mask[:, perm])
    assert torch.equal(c["shots"], cp["shots"]) and torch.equal(c["shot_present"][:, :2], torch.ones(3, 2, dtype=torch.bool))
    with torch.no_grad():
        a = m.sample(6, c, torch.Generator().manual_seed(0), steps=3)
        b = m.sample(6, cp, torch.Generator().manual_seed(0), steps=3)
    assert torch.allclose(a, b, atol=1e-5)
    picked = m._with_pick(c, torch.linspace(0, 0.999, 6).expand(3, 6))["pick"]
    assert set(picked.unique().tolist()) == {0, 1}  # only the two present shots


@pytest.mark.parametrize("bad", [1, 0, "median"])
def test_bad_template_is_a_one_line_config_error(bad):
    with pytest.raises(ConfigError, match="model.extra.template'? must be") as e:  # a wrong type, a wrong value
        tiny(template=bad)
    assert "\n" not in str(e.value)


def test_strength_makes_variations_of_a_shot_and_small_strength_returns_it():
    m, _ = tiny()
    perturbed(m, 0.1)
    sup, _ = data()
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[0, 1:] = False  # task 0 has one shot: every variation starts from it
    c = m.context(sup, mask)
    with torch.no_grad():
        near = m.sample(5, c, torch.Generator().manual_seed(0), steps=25, strength=0.02)
        far = m.sample(5, c, torch.Generator().manual_seed(0), steps=25, strength=0.9)
    shot = sup[0, 0]
    assert ((near[0] > 0.5).float() == shot).float().mean() > 0.97  # barely noised: the shot comes back
    assert ((far[0] > 0.5).float() != shot).float().mean() > ((near[0] > 0.5).float() != shot).float().mean()
    for t in range(3):  # every sample is near one of its task's present shots, more than near another task's
        d_own = torch.cdist(near[t].flatten(1), sup[t][mask[t]].flatten(1)).min(1).values
        assert (d_own < 1.5).all()
    with pytest.raises(ValueError, match="every task needs at least one"):
        m.sample(2, m.context(sup[:, :0], mask[:, :0]), strength=0.5)


@pytest.mark.parametrize("value", ["0", "1.5"])
def test_strength_out_of_range_is_a_one_line_config_error(value):
    with pytest.raises(ConfigError, match="eval.strength"):
        from fewgen.config import validate
        validate(apply_overrides(Config(), [f"eval.strength={value}"]))
