"""MAML's meta-gradient against hand-derived values; first order.

The linear-Gaussian model: a 1-D linear flow ``w x - b ~ N(0, 1)``, i.e. ``x ~ N(b/w, 1/w^2)``, with
the exact per-example loss ``l(x) = 0.5 (w x - b)^2 - log|w| + 0.5 log(2 pi)``. Its support loss
is a function of the support's moments ``(Sx, Sxx)`` only, so gradients and Hessians are written
by hand below (the way torchmeta tests MAML on a linear model), in plain Python floats.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from fewgen.config import TrainConfig
from fewgen.meta import get_algorithm
from fewgen.meta.inner import LR_PREFIX
from fewgen.models import GenerativeModel, params_of
from fewgen.tasks.base import Episode


class LinearGaussian(GenerativeModel):
    """x ~ N(b / w, 1 / w^2): exact NLL, no context (an unconditional model), no latent."""

    family = "linear_gaussian"
    modality = "toy"

    def __init__(self, w: float = 1.3, b: float = 0.4) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([w], dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor([b], dtype=torch.float64))

    def context(self, support: Tensor, mask: Tensor) -> dict[str, Tensor]:
        return {"none": support.new_zeros(mask.shape[0], 0)}  # unconditional: an empty context

    def loss(self, x: Tensor, context: Tensor, noise: Tensor | None = None) -> Tensor:
        return (0.5 * (self.w * x - self.b) ** 2 - torch.log(self.w.abs()) + 0.5 * math.log(2 * math.pi)).sum(-1)

    def nll(self, x, context, num_samples=1, chunk=1, generator=None):
        return self.loss(x, context)

    def sample(self, n, context, generator=None):
        return (self.b + torch.randn(context["none"].shape[0], n, 1, generator=generator, dtype=torch.float64)) / self.w

    def config_dict(self):
        return {"w": float(self.w), "b": float(self.b)}


# ----------------------------------------------------------------------------- by hand
def moments(x: Tensor, mask: Tensor | None = None) -> tuple[float, float]:
    x = x.flatten() if mask is None else x.flatten()[mask]
    return float(x.mean()), float((x**2).mean())


def grad_by_hand(w: float, b: float, sx: float, sxx: float) -> tuple[float, float]:
    """d/d(w, b) of mean_x [0.5 (w x - b)^2 - log|w|]."""
    return w * sxx - b * sx - 1.0 / w, b - w * sx


def hessian_by_hand(w: float, b: float, sx: float, sxx: float) -> list[list[float]]:
    return [[sxx + 1.0 / w**2, -sx], [-sx, 1.0]]


def loss_by_hand(w: float, b: float, sx: float, sxx: float) -> float:
    return 0.5 * (w * w * sxx - 2 * w * b * sx + b * b) - math.log(abs(w)) + 0.5 * math.log(2 * math.pi)


def maml_by_hand(w, b, sup, qry, lr_w, lr_b, steps, second_order):
    """(meta-loss, d/dw, d/db, d/dlr_w, d/dlr_b) of one task, derived by hand (chain rule through
    the inner SGD steps; the lr-gradients only for one step)."""
    theta = [(w, b)]
    for _ in range(steps):
        gw, gb = grad_by_hand(*theta[-1], *sup)
        theta.append((theta[-1][0] - lr_w * gw, theta[-1][1] - lr_b * gb))
    v = list(grad_by_hand(*theta[-1], *qry))  # dL_q / d phi
    d_lr = (-grad_by_hand(w, b, *sup)[0] * v[0], -grad_by_hand(w, b, *sup)[1] * v[1]) if steps == 1 else None
    if second_order:  # v <- (I - H diag(lr))^T ... applied from the last step back: J_s^T = I - H_s diag(lr)
        for s in reversed(range(steps)):
            h = hessian_by_hand(*theta[s], *sup)
            v = [v[0] - (h[0][0] * lr_w * v[0] + h[0][1] * lr_b * v[1]),
                 v[1] - (h[1][0] * lr_w * v[0] + h[1][1] * lr_b * v[1])]
    return loss_by_hand(*theta[-1], *qry), v[0], v[1], d_lr


def episode(seed: int = 0, tasks: int = 3, shots: int = 4, queries: int = 5) -> Episode:
    g = torch.Generator().manual_seed(seed)
    mu = 3 * torch.randn(tasks, 1, 1, generator=g, dtype=torch.float64)
    sup = mu + torch.randn(tasks, shots, 1, generator=g, dtype=torch.float64)
    qry = mu + torch.randn(tasks, queries, 1, generator=g, dtype=torch.float64)
    mask = torch.ones(tasks, shots, dtype=torch.bool)
    mask[1, 2:] = False  # tasks with fewer shots: the support loss is a masked mean
    return Episode(sup, mask, qry, tuple(f"t{i}" for i in range(tasks)))


def meta_grads(algo_name: str, model: GenerativeModel, ep: Episode, **cfg) -> tuple[float, dict[str, Tensor]]:
    algo = get_algorithm(TrainConfig(algo=algo_name, **cfg))
    params = params_of(model)
    extra = {k: v.to(torch.float64).requires_grad_() for k, v in algo.algo_params(model).items()}
    loss = algo.meta_loss(model, params, extra, ep, torch.Generator().manual_seed(0))
    names = list(params) + list(extra)
    grads = torch.autograd.grad(loss, [*params.values(), *extra.values()])
    return float(loss.detach()), dict(zip(names, grads))


@pytest.mark.parametrize("steps", [1, 2, 3])
@pytest.mark.parametrize("algo", ["maml", "fomaml"])
def test_meta_gradient_equals_hand_derived(algo, steps):
    model, ep, lr = LinearGaussian(), episode(), 0.1
    loss, grads = meta_grads(algo, model, ep, inner_steps=steps, inner_lr=lr)
    by_hand = [maml_by_hand(1.3, 0.4, moments(ep.support[t], ep.support_mask[t]), moments(ep.query[t]), lr, lr,
                            steps, second_order=algo == "maml") for t in range(ep.num_tasks)]
    assert loss == pytest.approx(sum(h[0] for h in by_hand) / 3, rel=1e-12)
    assert float(grads["w"]) == pytest.approx(sum(h[1] for h in by_hand) / 3, rel=1e-10)
    assert float(grads["b"]) == pytest.approx(sum(h[2] for h in by_hand) / 3, rel=1e-10)


def test_first_order_is_second_order_without_the_hessian_term():
    model, ep = LinearGaussian(), episode(seed=1)
    _, second = meta_grads("maml", model, ep, inner_steps=1, inner_lr=0.1)
    _, first = meta_grads("fomaml", model, ep, inner_steps=1, inner_lr=0.1)
    _, flag = meta_grads("maml", model, ep, inner_steps=1, inner_lr=0.1, first_order=True)
    # second = (I - lr H_s)^T g_q  =>  first = second + lr H_s g_q, per task.
    correction = torch.zeros(2, dtype=torch.float64)
    for t in range(ep.num_tasks):
        sup = moments(ep.support[t], ep.support_mask[t])
        _, gw, gb, _ = maml_by_hand(1.3, 0.4, sup, moments(ep.query[t]), 0.1, 0.1, 1, second_order=False)
        hessian = torch.tensor(hessian_by_hand(1.3, 0.4, *sup), dtype=torch.float64)
        correction += 0.1 * hessian @ torch.tensor([gw, gb], dtype=torch.float64)
    correction /= ep.num_tasks
    assert torch.allclose(torch.cat([first["w"], first["b"]]), torch.cat([second["w"], second["b"]]) + correction,
                          rtol=1e-10)
    assert torch.equal(first["w"], flag["w"]) and torch.equal(first["b"], flag["b"])
    assert not torch.allclose(first["w"], second["w"])  # the Hessian term is not negligible here


def test_meta_sgd_learned_rates_get_their_hand_derived_gradient():
    model, ep = LinearGaussian(), episode(seed=2)
    loss, grads = meta_grads("maml", model, ep, inner_steps=1, inner_lr=0.07, learn_inner_lr=True)
    by_hand = [maml_by_hand(1.3, 0.4, moments(ep.support[t], ep.support_mask[t]), moments(ep.query[t]), 0.07, 0.07,
                            1, second_order=True) for t in range(ep.num_tasks)]
    assert float(grads[LR_PREFIX + "w"]) == pytest.approx(sum(h[3][0] for h in by_hand) / 3, rel=1e-10)
    assert float(grads[LR_PREFIX + "b"]) == pytest.approx(sum(h[3][1] for h in by_hand) / 3, rel=1e-10)
    assert float(grads["w"]) == pytest.approx(sum(h[1] for h in by_hand) / 3, rel=1e-10)


# vmapped == looped and task chunks == one vmap, for every family and algorithm: tests/contract/test_contract.py
