"""A Reptile update equals its formula: theta <- theta + eps * mean_t (phi_t - theta)."""

from __future__ import annotations

import copy

import pytest
import torch

from fewgen.config import TrainConfig
from fewgen.meta import get_algorithm
from fewgen.models import params_of
from fewgen.tasks.base import Episode
from test_maml import LinearGaussian, episode, grad_by_hand, loss_by_hand, moments


def sgd_phi_by_hand(w, b, sup, lr, steps):
    for _ in range(steps):
        gw, gb = grad_by_hand(w, b, *sup)
        w, b = w - lr * gw, b - lr * gb
    return w, b


def test_reptile_sgd_update_equals_its_formula():
    model, ep, lr, steps, eps = LinearGaussian(), episode(seed=4), 0.05, 3, 0.5
    algo = get_algorithm(TrainConfig(algo="reptile", inner_steps=steps, inner_lr=lr))
    loss = algo.meta_loss(model, params_of(model), {}, ep, torch.Generator().manual_seed(0))
    phis = [sgd_phi_by_hand(1.3, 0.4, moments(ep.support[t], ep.support_mask[t]), lr, steps) for t in range(3)]
    # The value is the query loss after adaptation (what logs and validation report) ...
    by_hand = sum(loss_by_hand(*phis[t], *moments(ep.query[t])) for t in range(3)) / 3
    assert float(loss.detach()) == pytest.approx(by_hand, rel=1e-12)
    # ... and one outer SGD step at rate eps is exactly Reptile's update.
    opt = torch.optim.SGD(model.parameters(), lr=eps)
    opt.zero_grad()
    loss.backward()
    opt.step()
    mean_w, mean_b = sum(p[0] for p in phis) / 3, sum(p[1] for p in phis) / 3
    assert float(model.w.detach()) == pytest.approx(1.3 + eps * (mean_w - 1.3), rel=1e-12)
    assert float(model.b.detach()) == pytest.approx(0.4 + eps * (mean_b - 0.4), rel=1e-12)


def test_reptile_adam_inner_loop_equals_torch_adam():
    model, ep, lr, steps = LinearGaussian(), episode(seed=5), 0.03, 4
    algo = get_algorithm(TrainConfig(algo="reptile", inner_steps=steps, inner_lr=lr, reptile_inner="adam"))
    phis, _ = algo.adapted(model, params_of(model), ep, torch.Generator().manual_seed(0))
    for t in range(ep.num_tasks):
        m = copy.deepcopy(model)
        opt = torch.optim.Adam(m.parameters(), lr=lr, betas=(0.0, 0.999), eps=1e-8)  # Nichol et al.: beta1 = 0
        sup = ep.support[t][ep.support_mask[t]]
        for _ in range(steps):
            opt.zero_grad()
            m.loss(sup[None], torch.zeros(1, 0, dtype=torch.float64)).mean().backward()
            opt.step()
        assert torch.allclose(phis["w"][t], m.w.detach(), rtol=1e-12) and torch.allclose(phis["b"][t], m.b.detach(),
                                                                                          rtol=1e-12)


def test_reptile_rejects_meta_sgd_and_unknown_inner_optimiser():
    from fewgen.config import Config, apply_overrides
    from fewgen.errors import ConfigError

    with pytest.raises(ConfigError, match="'train.reptile_inner' must be sgd or adam, got 'rmsprop'"):
        apply_overrides(Config(), ["train.algo=reptile", "train.reptile_inner=rmsprop"])
    with pytest.raises(ConfigError, match="Meta-SGD"):
        apply_overrides(Config(), ["train.algo=reptile", "train.learn_inner_lr=true"])
    assert apply_overrides(Config(), ["train.algo=maml", "train.learn_inner_lr=true"]).train.learn_inner_lr


def test_reptile_with_no_shots_leaves_theta_in_place():
    model, ep = LinearGaussian(), episode(seed=6)
    empty = Episode(ep.support, torch.zeros_like(ep.support_mask), ep.query, ep.names)
    loss = get_algorithm(TrainConfig(algo="reptile", inner_steps=2)).meta_loss(
        model, params_of(model), {}, empty, torch.Generator())
    loss.backward()
    assert abs(float(model.w.grad)) < 1e-15 and abs(float(model.b.grad)) < 1e-15  # (mean of equal floats)
