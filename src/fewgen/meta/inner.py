"""The one inner loop: fine-tune a generator on a task's support set, vectorised over tasks.

Every gradient-based algorithm (MAML, first-order MAML, Meta-SGD, Reptile, the hybrid), every
baseline that fine-tunes (scratch, transfer) and test-time adaptation run *this* loop, so a
fine-tuning step means the same thing in training, adaptation and evaluation.

One inner step on task t (Finn et al. 2017, "Model-Agnostic Meta-Learning")::

    phi <- phi - alpha * grad_phi  L_support(phi)

where ``L_support`` is the model's loss (:meth:`~fewgen.models.base.Generator.loss`, nats per
example) averaged over the task's *present* shots, given the task's context: for conditional
models (amortized, hybrid) each shot given the encoding of the *other* shots under ``phi``
(leave-one-out, so fine-tuning cannot learn to copy a shot from its own context), the empty set's for
unconditional ones (MAML, Reptile, transfer, scratch), or a fixed stored context (an already
adapted checkpoint). ``alpha`` is one scalar, or one learned tensor per parameter (Meta-SGD,
Li et al. 2017). Reptile can use Adam instead of SGD (Nichol et al. 2018, with beta1 = 0
because the optimiser state is reset for every task).

Gradients come from ``torch.func.grad``, which composes with ``torch.func.vmap`` (over the task
axis) and with ordinary autograd outside: the meta-gradient of second-order MAML flows back
through the inner gradient. First order (FOMAML) takes the inner gradient at detached
parameters, so ``d phi / d theta = I`` and no second-order graph is recorded.

Randomness is drawn *before* the loop (:func:`draw_support_noise`) and passed in, so the loop is
a pure, deterministic function of its inputs, and vmapped equals looped.

Shapes: T tasks, K shots, S inner steps, ``*X`` one example, ``*E`` one example's noise.
Functions named ``*_task`` see one task (no T axis); :func:`map_tasks` runs them over T.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import Tensor
from torch.func import grad, vmap
from torch.utils._pytree import tree_leaves, tree_map

from ..models import Context, GenerativeModel, Params, call
from .base import query_mean

LR_PREFIX = "inner_lr."  # extra meta-parameters holding Meta-SGD step sizes, one per model parameter


@dataclass(frozen=True)
class InnerConfig:
    """How to fine-tune on a support set."""

    steps: int = 1
    lr: float = 0.05  # used for every parameter unless per-parameter (Meta-SGD) rates are given
    first_order: bool = False  # stop the gradient through the inner gradient (FOMAML, Reptile)
    optimizer: str = "sgd"  # sgd | adam
    conditional: bool = False  # context = the support's encoding (else the empty set's)
    betas: tuple[float, float] = (0.0, 0.999)  # Adam (beta1 = 0 as in Reptile's inner Adam)
    eps: float = 1e-8
    on_step: Callable[[int], None] | None = field(default=None, compare=False)  # called with each finished step


# ----------------------------------------------------------------------------- losses
def _one_task(context: Context | None) -> Context | None:
    """A single task's context (leaves without the task axis) as a batch of one task."""
    return None if context is None else {k: v[None] for k, v in context.items()}


def task_context(model: GenerativeModel, params: Params, support: Tensor, mask: Tensor, conditional: bool) -> Context:
    """The context of supports (T, K, *X): their encoding, or the empty set's."""
    if conditional:
        return call(model, params, "context", support, mask)
    # One slot, masked out: the contract's empty set, at the cost of encoding one shot (a K = 0
    # tensor would be cheaper but trips some models' backward on zero-size reshapes).
    return call(model, params, "context", support[:, :1], torch.zeros_like(mask[:, :1]))


def support_loss(model: GenerativeModel, params: Params, support: Tensor, mask: Tensor, noise: Tensor | None,
                 conditional: bool, context: Context | None = None) -> Tensor:
    """Mean loss (nats per example) over the present shots of supports (T, K, *X); 0 if none.

    ``context`` (leaves (T, ...)), when given, is used as is (a fixed, stored context). A conditional model
    (``conditional`` and no fixed context) scores each shot given the *other* shots
    (:func:`leave_one_out_loss`): scored given a set that contains it, a shot could be copied
    from the context, and fine-tuning would teach copying instead of the task.
    """
    if conditional and context is None:
        return leave_one_out_loss(model, params, support, mask, noise)
    ctx = context if context is not None else task_context(model, params, support, mask, conditional)
    per_example = call(model, params, "loss", support, ctx, noise)  # (T, K)
    m = mask.to(per_example.dtype)
    return (per_example * m).sum() / m.sum().clamp_min(1.0)


def leave_one_out_loss(model: GenerativeModel, params: Params, support: Tensor, mask: Tensor,
                       noise: Tensor | None) -> Tensor:
    """Mean over the present shots k of ``loss(x_k | context(support without k))``, (T, K, *X).

    The K contexts of a task are computed in one batch (T*K sets of K shots, shot k masked out
    of set k), so this costs K set encodings of K shots instead of one. With K = 1 each shot
    is scored given the empty set (the unconditional model).
    """
    T, K = mask.shape
    others = mask[:, None, :] & ~torch.eye(K, dtype=torch.bool, device=mask.device)  # (T, K, K)
    sets = support[:, None].expand(T, K, *support.shape[1:]).reshape(T * K, *support.shape[1:])
    ctx = call(model, params, "context", sets, others.reshape(T * K, K))  # leaves (T*K, ...)
    x = support.reshape(T * K, 1, *support.shape[2:])
    n = None if noise is None else noise.reshape(T * K, 1, *noise.shape[2:])
    per_example = call(model, params, "loss", x, ctx, n).reshape(T, K)
    m = mask.to(per_example.dtype)
    return (per_example * m).sum() / m.sum().clamp_min(1.0)


def query_loss_task(model: GenerativeModel, params: Params, support: Tensor, mask: Tensor, query: Tensor,
                    noise: Tensor | None, conditional: bool, context: Context | None = None,
                    query_mask: Tensor | None = None) -> Tensor:
    """One task's mean query loss under (adapted) ``params``: support (K, *X), query (Q, *X),
    averaged over the present queries (``query_mask`` (Q,) bool; None: all are)."""
    ctx = _one_task(context) if context is not None else task_context(model, params, support[None], mask[None],
                                                                      conditional)  # leaves (1, ...)
    loss = call(model, params, "loss", query[None], ctx, None if noise is None else noise[None])  # (1, Q)
    return loss.mean() if query_mask is None else query_mean(loss, query_mask[None])


# ----------------------------------------------------------------------------- noise
def draw_support_noise(model: GenerativeModel, support: Tensor, steps: int, generator: torch.Generator | None
                       ) -> Tensor | None:
    """Noise for ``steps`` support losses, one fresh draw per step: (T, S, K, *E), or None for
    models without latent variables."""
    draws = [model.draw_noise(support, generator) for _ in range(steps)]
    if not draws or draws[0] is None:
        return None
    return torch.stack(draws, 1)


# ----------------------------------------------------------------------------- the loop
def _adam_state(params: Params) -> tuple[Params, Params]:
    return ({k: torch.zeros_like(v) for k, v in params.items()}, {k: torch.zeros_like(v) for k, v in params.items()})


def fine_tune_task(model: GenerativeModel, params: Params, support: Tensor, mask: Tensor, noise: Tensor | None,
                   inner: InnerConfig, lrs: Params | None = None, context: Context | None = None) -> Params:
    """Fine-tune on one task: ``inner.steps`` steps on its support loss; returns the adapted params.

    support (K, *X), mask (K,), noise (S, K, *E) or None, context (one task's, leaves without
    the task axis) or None (then it is
    computed from the current parameters, see :func:`support_loss`), ``lrs`` Meta-SGD rates
    shaped like the parameters. Differentiable w.r.t. ``params`` and ``lrs`` (to second order
    unless ``inner.first_order``).
    """
    def loss_fn(p: Params, step: int) -> Tensor:
        n = None if noise is None else noise[step][None]  # (1, K, *E)
        return support_loss(model, p, support[None], mask[None], n, inner.conditional, _one_task(context))

    grad_fn = grad(loss_fn)
    phi = dict(params)
    if inner.optimizer == "adam":
        m, v = _adam_state(params)
    for s in range(inner.steps):
        if inner.first_order:  # FOMAML: the inner gradient is a constant for the outer gradient
            g = grad_fn({k: t.detach() for k, t in phi.items()}, s)
        else:
            g = grad_fn(phi, s)
        if inner.optimizer == "adam":  # torch.optim.Adam's update, written out (pure: vmap-friendly)
            b1, b2 = inner.betas
            m = {k: b1 * m[k] + (1 - b1) * g[k] for k in g}
            v = {k: b2 * v[k] + (1 - b2) * g[k] ** 2 for k in g}
            c1, c2 = 1 - b1 ** (s + 1), 1 - b2 ** (s + 1)
            g = {k: (m[k] / c1) / ((v[k] / c2).sqrt() + inner.eps) for k in g}
        phi = {k: phi[k] - (lrs[k] if lrs is not None else inner.lr) * g[k] for k in phi}
        if inner.on_step is not None:  # a progress bar (once per step under vmap; per task in a loop)
            inner.on_step(s + 1)
    return phi


def map_tasks(fn: Callable[..., Any], args: Sequence[Any], batched: Sequence[bool], vectorize: bool = True,
              randomness: str = "error") -> Any:
    """Run a one-task function over the task axis (axis 0) of the ``batched`` arguments.

    ``vectorize=True`` uses ``torch.func.vmap``; ``False`` is the plain Python loop over tasks
    (the reference the tests compare against). Outputs (tensors or dicts/tuples of tensors)
    get a leading T axis. Arguments may be tensors or dicts of tensors (per-task parameters);
    ``None`` arguments are passed through unbatched.
    """
    dims = tuple(0 if b and a is not None else None for a, b in zip(args, batched))
    if vectorize:
        return vmap(fn, in_dims=dims, randomness=randomness)(*args)
    num_tasks = next(tree_leaves(a)[0].shape[0] for a, d in zip(args, dims) if d == 0)
    outs = [fn(*(tree_map(lambda v: v[t], a) if d == 0 else a for a, d in zip(args, dims)))
            for t in range(num_tasks)]
    return tree_map(lambda *xs: torch.stack(xs), outs[0], *outs[1:])


def fine_tune(model: GenerativeModel, params: Params, support: Tensor, mask: Tensor, noise: Tensor | None,
              inner: InnerConfig, lrs: Params | None = None, context: Context | None = None,
              vectorize: bool = True) -> Params:
    """Fine-tune shared ``params`` on each of T supports (T, K, *X) -> per-task params (T, ...).

    mask (T, K), noise (T, S, K, *E) or None, context (leaves (T, ...)) or None (see
    :func:`fine_tune_task`).
    """
    def one(sup: Tensor, msk: Tensor, nz: Tensor | None, ctx: Context | None) -> Params:
        return fine_tune_task(model, params, sup, msk, nz, inner, lrs, ctx)

    return map_tasks(one, (support, mask, noise, context), (True, True, True, True), vectorize)


# ----------------------------------------------------------------------------- chunks
def task_chunks(num_tasks: int, chunk: int) -> list[slice]:
    """The task axis cut into slices of ``chunk`` tasks (one slice when ``chunk`` is 0 or larger)."""
    chunk = num_tasks if chunk <= 0 else min(chunk, num_tasks)
    return [slice(i, min(i + chunk, num_tasks)) for i in range(0, num_tasks, chunk)]


def chunked_task_mean(task_losses: Callable[[slice], Tensor], num_tasks: int, chunk: int,
                      leaves: Sequence[Tensor]) -> Tensor:
    """The mean over tasks of ``task_losses(slice) -> (n,)``, with memory for ``chunk`` tasks only.

    Each chunk's graph (the per-task adapted parameters and everything MAML differentiates
    through) is built, differentiated w.r.t. ``leaves`` and freed before the next chunk, so peak
    memory follows ``chunk``, not the meta-batch. What comes back is a scalar whose *value* is the
    mean loss and whose *gradient* w.r.t. ``leaves`` is the accumulated gradient of that mean
    (``sum_i <g_i, leaf_i>`` minus its own value), so callers just call ``backward()`` on it as
    on an unchunked loss. With one chunk, or without autograd, it is ``task_losses(all).mean()``.
    """
    slices = task_chunks(num_tasks, chunk)
    needs = [leaf for leaf in leaves if leaf.requires_grad]
    if len(slices) == 1 or not needs or not torch.is_grad_enabled():
        return torch.cat([task_losses(sl) for sl in slices]).mean()
    total: Tensor | None = None
    acc: list[Tensor | None] = [None] * len(needs)
    for sl in slices:
        part = task_losses(sl).sum() / num_tasks
        grads = torch.autograd.grad(part, needs, allow_unused=True)
        acc = [a if g is None else (g if a is None else a + g) for a, g in zip(acc, grads)]
        total = part.detach() if total is None else total + part.detach()
    assert total is not None
    surrogate = sum(((g * leaf).sum() for g, leaf in zip(acc, needs) if g is not None), total.new_zeros(()))
    return total + (surrogate - surrogate.detach())


# ----------------------------------------------------------------------------- Meta-SGD
def init_inner_lrs(model: GenerativeModel, lr: float) -> dict[str, Tensor]:
    """Meta-SGD step sizes (Li et al. 2017, "Meta-SGD"): one per model parameter entry,
    initialised to ``lr``; stored as extra meta-parameters named ``inner_lr.<param name>``."""
    return {LR_PREFIX + k: torch.full_like(p.detach(), lr) for k, p in model.named_parameters()}


def inner_lrs(extra: dict[str, Tensor]) -> Params | None:
    """The Meta-SGD step sizes in an extra-parameter (or checkpoint tensor) dict, keyed by
    parameter name; None when there are none."""
    lrs = {k[len(LR_PREFIX):]: v for k, v in extra.items() if k.startswith(LR_PREFIX)}
    return lrs or None
