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

What adapts (``InnerConfig.adapt``, ``train.adapt_params``) is a *parameter transform*: the inner
loop updates adaptation variables ``v`` and the model runs with ``compose(theta, v)``, so no
module is edited (:func:`adapt_variables`, :func:`compose`):

- ``all``: ``v = theta`` (plain MAML);
- ``bias``: only the biases (BitFit, Ben Zaken et al. 2022);
- ``film``: a per-output-unit scale and shift of every linear / conv layer, from identity:
  ``W' = diag(gamma) W``, ``b' = gamma b + beta`` (FiLM, Perez et al. 2018; as CAVIA's context
  parameters, Zintgraf et al. 2019, reset for every task while ``theta`` is meta-learned);
- ``lora``: low-rank deltas ``W' = W + A B`` of the same layers' weights (LoRA, Hu et al. 2022),
  ``A`` (out, r) a fixed seeded draw and ``B`` (r, in) from zero, both adapted.

Fewer adapted parameters are the standard remedy for overfitting one shot. Two more remedies
(``InnerConfig.augment`` and ``select``): every step may score a *jittered* copy of the support
(a small random affine warp of each image), and the loop may keep the parameters of the step
(0 included) whose loss on a held-out jittered copy is lowest, so more steps cannot make the
adapted model worse on what it has not been fitted to.

Randomness is drawn *before* the loop (:func:`draw_support_noise`: the latent noise, the
jittered supports, the held-out copy, per-task step counts) and passed in as one dict, so the
loop is a pure, deterministic function of its inputs, and vmapped equals looped.

Shapes: T tasks, K shots, S inner steps, ``*X`` one example, ``*E`` one example's noise.
Functions named ``*_task`` see one task (no T axis); :func:`map_tasks` runs them over T.
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch._C._functorch import is_functorch_wrapped_tensor
from torch.func import grad, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._pytree import tree_leaves, tree_map

from ..config import TrainConfig
from ..models import Context, GenerativeModel, Params, call
from ..tasks.base import task_randn
from .base import query_mean

if TYPE_CHECKING:
    from ..tasks.base import Episode

LR_PREFIX = "inner_lr."  # algorithm meta-parameters holding Meta-SGD step sizes, one per adapted variable
ADAPT_PARAMS = ("all", "bias", "film", "lora")  # train.adapt_params (config.validate checks the same names)
Noise = dict[str, Tensor]  # pre-drawn randomness of the inner loop (see draw_support_noise)


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
    adapt: str = "all"  # what changes in the loop: all | bias | film | lora (see the module docstring)
    lora_rank: int = 4
    augment: bool = False  # images: every step scores a freshly jittered copy of the support
    select: str = "last"  # last | heldout: keep the step with the lowest held-out jittered-support loss
    random_steps: bool = False  # meta-training: each task runs a uniform 1..steps of the steps
    on_step: Callable[[int], None] | None = field(default=None, compare=False)  # called with each finished step


def inner_config(cfg: TrainConfig, steps: int | None = None, lr: float | None = None, training: bool = False,
                 **kw: Any) -> InnerConfig:
    """The inner loop a training config describes (``train.inner_*``, ``train.adapt_params``):
    the one meta-training runs and test-time adaptation repeats. ``steps`` / ``lr`` override the
    trained ones; the random step count is for meta-training only (``training``). A run and an
    adapter resolve "auto" options for their algorithm and data first
    (:func:`fewgen.meta.resolve_fine_tuning`); one left "auto" (a library call without data)
    means all parameters and the last step."""
    adapt = "all" if cfg.adapt_params == "auto" else cfg.adapt_params
    select = "last" if cfg.inner_select == "auto" else cfg.inner_select
    return InnerConfig(steps=cfg.inner_steps if steps is None else steps, lr=cfg.inner_lr if lr is None else lr,
                       adapt=adapt, lora_rank=cfg.lora_rank, augment=cfg.inner_augment,
                       select=select, random_steps=training and cfg.inner_steps_random, **kw)


# ----------------------------------------------------------------------------- what adapts
def adapted_layers(model: nn.Module) -> dict[str, tuple[str | None, int]]:
    """The linear / conv layers' weights: name -> (its bias's name or None, the output axis)."""
    out = {}
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)):
            pre = name + "." if name else ""
            axis = 1 if isinstance(mod, (nn.ConvTranspose1d, nn.ConvTranspose2d)) else 0
            out[pre + "weight"] = (pre + "bias" if mod.bias is not None else None, axis)
    return out


@functools.lru_cache(maxsize=1024)
def _lora_a_cpu(name: str, rows: int, rank: int) -> Tensor:
    # A local seeded Python generator, not a torch random op: this runs inside vmap.
    rng = random.Random(zlib.crc32(name.encode()))
    return torch.tensor([rng.gauss(0.0, 1.0 / math.sqrt(rank)) for _ in range(rows * rank)]).reshape(rows, rank)


def _lora_a(name: str, rows: int, rank: int, like: Tensor) -> Tensor:
    """LoRA's fixed factor A (rows, rank) of one weight: N(0, 1/rank) draws seeded by the weight's name."""
    return _lora_a_cpu(name, rows, rank).to(like)


def adapt_variables(model: nn.Module, params: Params, inner: InnerConfig) -> Params:
    """The inner loop's starting variables for ``inner.adapt`` (a function of ``params`` for
    ``all`` and ``bias``; the identity transform's for ``film`` and ``lora``)."""
    if inner.adapt == "all":
        return dict(params)
    if inner.adapt == "bias":
        return {k: v for k, v in params.items() if k.split(".")[-1] == "bias"}
    out = {}
    for w, (b, axis) in adapted_layers(model).items():
        W = params[w]
        if inner.adapt == "film":
            out["film.scale." + w] = W.detach().new_ones(W.shape[axis])  # (out,)
            if b is not None:  # a layer without a bias gets no shift (there is nowhere to put it)
                out["film.shift." + w] = W.detach().new_zeros(W.shape[axis])
        else:  # lora: W (out, *in) seen as a matrix (out, in*...)
            out["lora.a." + w] = _lora_a(w, W.shape[0], inner.lora_rank, W.detach())
            out["lora.b." + w] = W.detach().new_zeros(inner.lora_rank, W[0].numel())
    return out


def compose(model: nn.Module, params: Params, v: Params, inner: InnerConfig) -> Params:
    """The parameters the model runs with, given base ``params`` and adaptation variables ``v``."""
    if inner.adapt == "all":
        return v
    if inner.adapt == "bias":
        return {**params, **v}
    out = dict(params)
    for w, (b, axis) in adapted_layers(model).items():
        W = params[w]
        if inner.adapt == "film":
            scale = v["film.scale." + w]
            shape = [1] * W.dim()
            shape[axis] = -1
            out[w] = W * scale.reshape(shape)
            if b is not None:
                out[b] = params[b] * scale + v["film.shift." + w]
        else:
            out[w] = W + (v["lora.a." + w] @ v["lora.b." + w]).reshape(W.shape)
    return out


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
JITTER = (0.12, 0.06, 0.06)  # std of the rotation (radians, ~7 deg), log-scale, shift (share of the half-width)


def jitter_images(x: Tensor, z: Tensor) -> Tensor:
    """Small random affine warps of images x (..., C, H, W) from standard normals z (..., 4):
    rotation, isotropic scale and a shift, each clamped at 2 std (:data:`JITTER`). Binary images
    stay binary (re-thresholded at 0.5)."""
    lead, chw = x.shape[:-3], x.shape[-3:]
    z = z.reshape(-1, 4).clamp(-2, 2)
    rot, scale, shift = z[:, 0] * JITTER[0], torch.exp(z[:, 1] * JITTER[1]), z[:, 2:] * JITTER[2]
    cos, sin = torch.cos(rot) / scale, torch.sin(rot) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], -1), torch.stack([sin, cos, shift[:, 1]], -1)], 1)
    flat = x.reshape(-1, *chw)
    grid = F.affine_grid(theta.to(x.dtype), list(flat.shape), align_corners=False)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if bool(((flat == 0) | (flat == 1)).all()):
        out = (out > 0.5).to(x.dtype)
    return out.reshape(*lead, *chw)


def draw_support_noise(model: GenerativeModel, support: Tensor, steps: int, generator: torch.Generator | None,
                       inner: InnerConfig | None = None) -> Noise | None:
    """Everything random in ``steps`` inner steps on supports (T, K, *X), drawn up front:

    - ``latent`` (T, S, K, *E): one fresh draw of the model's noise per step (latent models);
    - ``support`` (T, S, K, *X): a freshly jittered support per step (``inner.augment``, images);
    - ``check``, ``check_latent`` (T, K, *X), (T, K, *E): the held-out jittered copy that
      ``inner.select = "heldout"`` scores after every step (the same copy at every step);
    - ``active`` (T, S) bool: which steps each task runs (``inner.random_steps``).

    None when nothing is random. Everything is drawn through ``task_randn`` (a leading task axis),
    so multi-process training shards it by task.
    """
    inner = inner or InnerConfig(steps=steps)
    out: Noise = {}
    draws = [model.draw_noise(support, generator) for _ in range(steps)]
    if draws and draws[0] is not None:
        out["latent"] = torch.stack(draws, 1)
    images = model.modality == "image" and support.dim() == 5
    T, K = support.shape[:2]
    if inner.augment and images and steps:
        z = task_randn((T, steps, K, 4), generator, support.device)
        out["support"] = jitter_images(support[:, None].expand(T, steps, *support.shape[1:]), z)
    if inner.select == "heldout" and steps:
        x = support
        if images:
            x = jitter_images(support, task_randn((T, K, 4), generator, support.device))
        out["check"] = x
        n = model.draw_noise(support, generator)
        if n is not None:
            out["check_latent"] = n
    if inner.random_steps and steps:
        u = torch.special.ndtr(task_randn((T,), generator, support.device))  # uniform in (0, 1)
        count = (u * steps).floor().clamp(0, steps - 1) + 1  # (T,) uniform in 1..S
        out["active"] = torch.arange(steps, device=support.device)[None, :] < count[:, None]
    return out or None


def draw_episode_noise(model: GenerativeModel, ep: "Episode", inner: InnerConfig, generator: torch.Generator | None
                       ) -> tuple[Noise | None, Tensor | None]:
    """An episode's randomness for the gradient-based algorithms, in one fixed order: the inner
    loop's (:func:`draw_support_noise`, leaves (T, ...)) and then the query losses' (T, Q, *E)."""
    return (draw_support_noise(model, ep.support, inner.steps, generator, inner),
            model.draw_noise(ep.query, generator))


def noise_tasks(noise: Noise | None, index: slice) -> Noise | None:
    """The tasks ``index`` of pre-drawn noise."""
    return None if noise is None else {k: v[index] for k, v in noise.items()}


# ----------------------------------------------------------------------------- the loop
def _adam_state(params: Params) -> tuple[Params, Params]:
    return ({k: torch.zeros_like(v) for k, v in params.items()}, {k: torch.zeros_like(v) for k, v in params.items()})


def _detached(p: Params) -> Params:
    return {k: t.detach() for k, t in p.items()}


def _transformed(*trees: Any) -> bool:
    """Whether any tensor in ``trees`` is inside a ``torch.func`` transform (vmap, grad)."""
    return any(isinstance(t, Tensor) and is_functorch_wrapped_tensor(t) for t in tree_leaves(list(trees)))


def autograd_grad(loss_fn: Callable[..., Tensor], create_graph: bool) -> Callable[..., Params]:
    """``torch.func.grad(loss_fn)`` for arguments outside any ``torch.func`` transform, with
    ordinary autograd (``torch.autograd.grad``, ``create_graph`` for second order): the gradient
    of ``loss_fn(v, *rest)`` w.r.t. the dict ``v``, zeros where ``v`` is unused. Outside a transform
    this is the plain per-task loop's arithmetic: no functorch wrappers, and the models' task
    convolutions (:mod:`fewgen.models.task_conv`) run torch's fused kernels, which is faster on CPU
    (``benchmarks/meta_step_speed.py``); under vmap, :func:`fine_tune_task` uses ``torch.func.grad``."""
    def fn(v: Params, *rest: Any) -> Params:
        if not v:  # nothing to adapt (e.g. FiLM of a model without any): as torch.func.grad gives
            return {}
        # second order differentiates this gradient again: attention then takes the math kernel
        # (the fused CPU kernel has no double backward), as it does under torch.func
        kernels = sdpa_kernel([SDPBackend.MATH]) if create_graph else contextlib.nullcontext()
        with torch.enable_grad(), kernels:
            leaves = {k: t if create_graph and t.requires_grad else t.detach().requires_grad_() for k, t in v.items()}
            loss = loss_fn(leaves, *rest)
            gs = torch.autograd.grad(loss, list(leaves.values()), create_graph=create_graph, allow_unused=True)
        return {k: torch.zeros_like(t) if g is None else g for (k, t), g in zip(leaves.items(), gs)}
    return fn


def fine_tune_task(model: GenerativeModel, params: Params, support: Tensor, mask: Tensor, noise: Noise | Tensor | None,
                   inner: InnerConfig, lrs: Params | None = None, context: Context | None = None) -> Params:
    """Fine-tune on one task: ``inner.steps`` steps on its support loss; returns the adapted params.

    support (K, *X), mask (K,), noise the task's part of :func:`draw_support_noise` (leaves
    without the task axis; a bare tensor is the latent noise (S, K, *E)) or None, context (one
    task's, leaves without the task axis) or None (then it is computed from the current
    parameters, see :func:`support_loss`), ``lrs`` Meta-SGD rates shaped like the adaptation
    variables (:func:`adapt_variables`). Only the variables of ``inner.adapt`` change.
    Differentiable w.r.t. ``params`` and ``lrs`` (to second order unless ``inner.first_order``);
    the held-out selection (``inner.select``) is a constant choice for the meta-gradient.
    """
    noise = {"latent": noise} if isinstance(noise, Tensor) else (noise or {})
    fixed = _one_task(context)

    def loss_fn(v: Params, theta: Params, step: int) -> Tensor:
        n = noise["latent"][step][None] if "latent" in noise else None  # (1, K, *E)
        x = noise["support"][step] if "support" in noise else support  # (K, *X)
        return support_loss(model, compose(model, theta, v, inner), x[None], mask[None], n, inner.conditional, fixed)

    def check_loss(v: Params) -> Tensor:  # the held-out jittered copy, without a graph
        n = noise["check_latent"][None] if "check_latent" in noise else None
        p = compose(model, _detached(params), _detached(v), inner)
        return support_loss(model, p, noise["check"][None], mask[None], n, inner.conditional, fixed).detach()

    looped = not _transformed(params, support, lrs, context)  # a plain loop over tasks: ordinary autograd
    grad_fn = autograd_grad(loss_fn, not inner.first_order) if looped else grad(loss_fn)
    v = adapt_variables(model, params, inner)
    select = inner.select == "heldout" and "check" in noise
    best, best_loss = (v, check_loss(v)) if select else (v, None)
    if inner.optimizer == "adam":
        m, sq = _adam_state(v)
    for s in range(inner.steps):
        if inner.first_order:  # FOMAML: the inner gradient is a constant for the outer gradient
            g = grad_fn(_detached(v), _detached(params), s)
        else:
            g = grad_fn(v, params, s)
        if inner.optimizer == "adam":  # torch.optim.Adam's update, written out (pure: vmap-friendly)
            b1, b2 = inner.betas
            m = {k: b1 * m[k] + (1 - b1) * g[k] for k in g}
            sq = {k: b2 * sq[k] + (1 - b2) * g[k] ** 2 for k in g}
            c1, c2 = 1 - b1 ** (s + 1), 1 - b2 ** (s + 1)
            g = {k: (m[k] / c1) / ((sq[k] / c2).sqrt() + inner.eps) for k in g}
        new = {k: v[k] - (lrs[k] if lrs is not None else inner.lr) * g[k] for k in v}
        if "active" in noise:  # this task's random step count is spent: it stays where it is
            new = {k: torch.where(noise["active"][s], new[k], v[k]) for k in v}
        v = new
        if select:
            loss = check_loss(v)
            better = loss < best_loss
            best = {k: torch.where(better, v[k], best[k]) for k in v}
            best_loss = torch.where(better, loss, best_loss)
        if inner.on_step is not None:  # a progress bar (once per step under vmap; per task in a loop)
            inner.on_step(s + 1)
    return compose(model, params, best if select else v, inner)


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
def init_inner_lrs(model: GenerativeModel, lr: float, inner: InnerConfig | None = None) -> dict[str, Tensor]:
    """Meta-SGD step sizes (Li et al. 2017, "Meta-SGD"): one per entry of every adaptation variable
    (:func:`adapt_variables`; the model's parameters for ``adapt = "all"``), initialised to ``lr``;
    stored as the algorithm's meta-parameters named ``inner_lr.<variable name>``."""
    v = adapt_variables(model, dict(model.named_parameters()), inner or InnerConfig())
    return {LR_PREFIX + k: torch.full_like(p.detach(), lr) for k, p in v.items()}


def inner_lrs(algo_params: dict[str, Tensor]) -> Params | None:
    """The Meta-SGD step sizes in an algorithm-parameter (or checkpoint tensor) dict, keyed by
    adaptation variable name; None when there are none."""
    lrs = {k[len(LR_PREFIX):]: v for k, v in algo_params.items() if k.startswith(LR_PREFIX)}
    return lrs or None
