"""``train.task_map``: MAML's tasks in vmap or in a per-task loop (ordinary autograd) give the same
meta-gradient, and ``auto`` measures without touching training's randomness."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fewgen.config import TrainConfig
from fewgen.meta import get_algorithm
from fewgen.models import params_of
from fewgen.models.image_vae import ImageVAE
from fewgen.tasks.base import Episode


def vae_episode(dtype: torch.dtype, tasks: int = 3) -> tuple[ImageVAE, Episode]:
    torch.manual_seed(0)
    model = ImageVAE(image_size=8, channels=1, hidden=8, latent=4, context=8, features=16).to(dtype)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(tasks, 7, 1, 8, 8, generator=g) < 0.3).to(dtype)
    mask = torch.ones(tasks, 3, dtype=torch.bool)
    mask[0, 2] = False  # a task with a missing shot
    return model, Episode(x[:, :3], mask, x[:, 3:], ("t",) * tasks)


def meta_grads(model: ImageVAE, ep: Episode, task_map: str, **cfg) -> tuple[torch.Tensor, list[torch.Tensor]]:
    algo = get_algorithm(TrainConfig(task_map=task_map, **cfg))
    params = params_of(model)
    extra = {k: v.requires_grad_() for k, v in algo.algo_params(model).items()}
    loss = algo.meta_loss(model, params, extra, ep, torch.Generator().manual_seed(0))
    return loss.detach(), list(torch.autograd.grad(loss, [*params.values(), *extra.values()]))


CASES = [dict(algo="maml"), dict(algo="fomaml"), dict(algo="maml", adapt_params="film"),
         dict(algo="fomaml", adapt_params="film", inner_steps=2), dict(algo="maml", learn_inner_lr=True),
         dict(algo="fomaml", adapt_params="bias", task_chunk=2), dict(algo="hybrid", inner_steps=2),
         dict(algo="maml", adapt_params="lora")]


@pytest.mark.parametrize("cfg", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
# float32: two second-order steps through the hybrid's context differ by rounding up to ~1e-5 relative
@pytest.mark.parametrize("dtype,tol,rtol", [(torch.float64, 1e-12, 1e-12), (torch.float32, 1e-6, 1e-5)])
def test_loop_and_vmap_give_the_same_meta_gradient(cfg, dtype, tol, rtol):
    cfg = {"inner_steps": 1, "inner_lr": 0.05, "task_chunk": 0, "adapt_params": "all", "inner_select": "last", **cfg}
    model, ep = vae_episode(dtype)
    loss_v, grads_v = meta_grads(model, ep, "vmap", **cfg)
    loss_l, grads_l = meta_grads(model, ep, "loop", **cfg)
    torch.testing.assert_close(loss_l, loss_v, rtol=tol, atol=tol)
    scale = max(float(g.abs().max()) for g in grads_v)
    for a, b in zip(grads_l, grads_v):
        torch.testing.assert_close(a, b, rtol=rtol, atol=tol * scale)


@pytest.mark.parametrize("algo,want_vmap", [("fomaml", False), ("maml", True)])
def test_auto_is_a_fixed_rule_loop_for_first_order_on_cpu(algo, want_vmap):
    """``auto`` decides by the order and the device, never by a timing: a seed fixes the run."""
    model, _ = vae_episode(torch.float64)
    cfg = TrainConfig(algo=algo, inner_steps=1, inner_lr=0.05, task_map="auto", adapt_params="all")
    a = get_algorithm(cfg)
    assert a.use_vmap(model, params_of(model)) is want_vmap
    assert get_algorithm(dataclasses.replace(cfg, task_map="vmap")).use_vmap(model, params_of(model)) is True
    assert get_algorithm(dataclasses.replace(cfg, task_map="loop")).use_vmap(model, params_of(model)) is False
