"""The inner loop: the support loss for conditional models (each shot given the other shots); what
adapts (train.adapt_params), support jitter, held-out step selection, vmapped equals looped."""

from __future__ import annotations

import pytest
import torch

from fewgen import adaptation
from fewgen.meta.inner import (InnerConfig, adapt_variables, adapted_layers, compose, draw_support_noise, fine_tune_task,
                               init_inner_lrs, inner_lrs, jitter_images, leave_one_out_loss, map_tasks, support_loss)
from fewgen.models import call, params_of
from fewgen.models.image_vae import ImageVAE
from fewgen.models.toy_gauss import ToyGauss


def setup():
    torch.manual_seed(0)
    model = ToyGauss(dim=2, hidden=16, context=8, scale=3.0)
    g = torch.Generator().manual_seed(1)
    support = 3 * torch.randn(3, 4, 2, generator=g)
    mask = torch.tensor([[True, True, True, True], [True, False, True, False], [True, False, False, False]])
    return model, params_of(model), support, mask


def test_leave_one_out_scores_each_shot_given_the_other_present_shots():
    model, params, support, mask = setup()
    got = leave_one_out_loss(model, params, support, mask, None)
    terms = []
    for t in range(3):
        for k in range(4):
            if not mask[t, k]:
                continue
            others = mask[t].clone()
            others[k] = False
            ctx = call(model, params, "context", support[t : t + 1], others[None])
            terms.append(call(model, params, "loss", support[t : t + 1, k : k + 1], ctx, None).squeeze())
    assert torch.allclose(got, torch.stack(terms).mean(), atol=1e-6)
    # A shot alone in its task is scored given the empty set: its context carries nothing of it.
    empty = call(model, params, "context", support[2:3], torch.zeros(1, 4, dtype=torch.bool))
    alone = call(model, params, "loss", support[2:3, :1], empty, None).squeeze()
    assert torch.allclose(leave_one_out_loss(model, params, support[2:3], mask[2:3], None), alone, atol=1e-6)


def test_conditional_support_loss_is_leave_one_out_and_a_fixed_context_is_used_as_is():
    model, params, support, mask = setup()
    assert torch.equal(support_loss(model, params, support, mask, None, conditional=True),
                       leave_one_out_loss(model, params, support, mask, None))
    ctx = call(model, params, "context", support, mask)
    per = call(model, params, "loss", support, ctx, None)
    fixed = support_loss(model, params, support, mask, None, conditional=True, context=ctx)
    assert torch.allclose(fixed, (per * mask).sum() / mask.sum(), atol=1e-6)


# ----------------------------------------------------------------------------- what adapts
def image_setup():
    torch.manual_seed(0)
    model = ImageVAE(image_size=8, channels=1, hidden=8, latent=4, context=8, features=16)
    g = torch.Generator().manual_seed(2)
    support = (torch.rand(3, 2, 1, 8, 8, generator=g) > 0.5).float()
    mask = torch.tensor([[True, True], [True, False], [True, True]])
    return model, params_of(model), support, mask


@pytest.mark.parametrize("adapt", ["all", "bias", "film", "lora"])
def test_each_adapt_params_choice_changes_only_its_parameters(adapt):
    model, params, support, mask = image_setup()
    inner = InnerConfig(adapt=adapt, lora_rank=2)
    phi = adaptation.adapt(model, support, mask, params, conditional=False, steps=2, lr=0.05, inner=inner,
                           generator=torch.Generator().manual_seed(3)).params  # (T, ...)
    layers = adapted_layers(model)
    biases = {b for b, _ in layers.values() if b is not None}
    changed = {k for k in params if not torch.equal(phi[k], params[k].expand_as(phi[k]))}
    allowed = {"all": set(params), "bias": {k for k in params if k.endswith("bias")},
               "film": set(layers) | biases, "lora": set(layers)}[adapt]
    assert changed and changed <= allowed, changed - allowed
    if adapt == "bias":  # GroupNorm biases too: every bias, nothing else
        assert any("bias" in k and k not in biases for k in changed)
    for w, (b, axis) in layers.items():
        W, new = params[w], phi[w][0]
        if adapt == "film":  # a per-output-unit scale: the ratio is constant along the other axes
            rows, new_rows = W.movedim(axis, 0).flatten(1), new.movedim(axis, 0).flatten(1)
            scale = (new_rows * rows).sum(1, keepdim=True) / (rows * rows).sum(1, keepdim=True)
            assert torch.allclose(new_rows, scale * rows, atol=1e-5)
        if adapt == "lora":  # a rank <= r delta of the weight seen as a matrix
            sv = torch.linalg.svdvals((new - W).reshape(W.shape[0], -1).double())
            assert sv.numel() <= 2 or sv[2] <= 1e-4 * sv[0]


def test_identity_variables_compose_to_the_parameters_and_rates_match_them():
    model, params, _, _ = image_setup()
    for adapt in ("bias", "film", "lora"):
        inner = InnerConfig(adapt=adapt, lora_rank=3)
        v = adapt_variables(model, params, inner)
        out = compose(model, params, v, inner)
        assert set(out) == set(params) and all(torch.allclose(out[k], params[k]) for k in params)
        assert set(inner_lrs(init_inner_lrs(model, 0.01, inner))) == set(v)
    assert set(inner_lrs(init_inner_lrs(model, 0.01))) == set(params)


def test_jitter_keeps_binary_images_binary_and_zero_noise_is_the_identity():
    _, _, support, _ = image_setup()
    assert torch.equal(jitter_images(support, torch.zeros(3, 2, 4)), support)
    out = jitter_images(support, torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(0)))
    assert out.shape == support.shape and ((out == 0) | (out == 1)).all() and not torch.equal(out, support)


@pytest.mark.parametrize("adapt", ["film", "lora"])
def test_augmented_selected_random_step_loop_is_the_same_vmapped_and_looped(adapt):
    model, params, support, mask = image_setup()
    inner = InnerConfig(steps=3, lr=0.02, adapt=adapt, augment=True, select="heldout", random_steps=True)
    noise = draw_support_noise(model, support, 3, torch.Generator().manual_seed(4), inner)
    assert set(noise) == {"latent", "support", "check", "check_latent", "active"}
    outs = []

    def one(sup, msk, nz):  # what meta-training maps over the tasks (meta/maml.py, meta/reptile.py)
        return fine_tune_task(model, params, sup, msk, nz, inner)

    for vectorize in (True, False):
        phi = map_tasks(one, (support, mask, noise), (True, True, True), vectorize)
        loss = sum((v.float() ** 2).sum() for v in phi.values())
        outs.append((phi, torch.autograd.grad(loss, list(params.values()), allow_unused=True)))
    (p1, g1), (p2, g2) = outs
    for k in p1:
        assert torch.allclose(p1[k], p2[k], atol=1e-5), k
    for x, y in zip(g1, g2):
        assert (x is None) == (y is None) and (x is None or torch.allclose(x, y, rtol=1e-4, atol=1e-4))


def test_heldout_selection_never_ends_worse_on_the_held_out_copy():
    model, params, support, mask = image_setup()
    for lr in (1e-3, 10.0):  # a step size that wrecks the model: the selection keeps step 0
        inner = InnerConfig(steps=4, lr=lr, first_order=True, adapt="all", augment=True, select="heldout")
        noise = draw_support_noise(model, support, 4, torch.Generator().manual_seed(5), inner)  # adapt's draw
        phi = adaptation.adapt(model, support, mask, params, conditional=False, steps=4, lr=lr, inner=inner,
                               generator=torch.Generator().manual_seed(5)).params
        for t in range(3):
            p = {k: v[t] for k, v in phi.items()}
            args = (noise["check"][t : t + 1], mask[t : t + 1], noise["check_latent"][t : t + 1], False)
            with torch.no_grad():
                assert support_loss(model, p, *args) <= support_loss(model, params, *args) + 1e-4
        if lr == 10.0:
            assert all(torch.equal(phi[k][0], params[k]) for k in params)
