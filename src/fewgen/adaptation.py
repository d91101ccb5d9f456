"""K-shot support -> adapted generator.

An :class:`Adapted` generator is a model plus what adaptation produced for each of T tasks:
its context (the support's encoding for conditional models, the empty set's for unconditional
ones, or a stored one) and its parameters (shared, or per task after fine-tuning, with a
leading task axis). Amortized adaptation is one forward pass; gradient-based adaptation runs
the shared inner loop of :mod:`fewgen.meta.inner`, vectorised over tasks.

:func:`adapter_for_checkpoint` turns any checkpoint (every algorithm, the scratch baseline, an
already adapted checkpoint) into an :data:`AdaptFn` ``(support, mask, steps) -> Adapted``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace as dc_replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from torch import Tensor

from .config import TrainConfig
from .errors import ConfigError
from .meta.inner import (InnerConfig, adapt_variables, draw_support_noise, fine_tune_task, inner_config, inner_lrs,
                         map_tasks, task_context)
from .models import Context, GenerativeModel, Params, call, context_expand, context_tasks, model_from_dict, params_of

if TYPE_CHECKING:
    from .checkpoint import Checkpoint


@dataclass
class Adapted:
    """The result of adapting ``model`` to T tasks."""

    model: GenerativeModel
    params: Params  # shared parameters, or per-task ones with a leading T axis (``per_task``)
    context: Context  # every leaf (T, ...)
    per_task: bool = False

    @property
    def num_tasks(self) -> int:
        return next(iter(self.context.values())).shape[0]

    def task(self, t: int) -> "Adapted":
        """The t-th task alone (T = 1, shared parameters)."""
        params = {k: v[t] for k, v in self.params.items()} if self.per_task else self.params
        return Adapted(self.model, params, context_tasks(self.context, t), per_task=False)


AdaptFn = Callable[[Tensor, Tensor, int], Adapted]  # (support (T,K,*X), mask (T,K), steps) -> Adapted


def adapt(model: GenerativeModel, support: Tensor, mask: Tensor | None = None, params: Params | None = None,
          conditional: bool = True, steps: int = 0, lr: float = 0.05, lrs: Params | None = None,
          optimizer: str = "sgd", generator: torch.Generator | None = None, context: Context | None = None,
          vectorize: bool = True, inner: InnerConfig | None = None,
          on_step: Callable[[int], None] | None = None) -> Adapted:
    """Adapt to T tasks from their supports ``(T, K, *X)`` (``mask`` (T, K) marks present shots).

    ``conditional=False`` ignores the support's content for the context (an unconditional
    model: the context of the empty set). ``steps > 0`` fine-tunes on each support with the
    shared inner loop (SGD at ``lr``, or per-parameter Meta-SGD rates ``lrs``; ``optimizer``
    ``"adam"`` for Reptile's inner Adam) and returns per-task parameters with a leading T axis.
    ``context`` (one task's, leaves (1, ...)) fixes the context of every task (an adapted
    checkpoint's stored one). ``inner`` gives the other fine-tuning options (what adapts,
    augmentation, held-out step selection; default: all parameters, the last step).
    ``generator`` draws the noise of latent-variable models' support losses (default: seed 0).
    ``on_step(s)`` is called as fine-tuning step s finishes (a progress bar).
    """
    params = {k: v.detach() for k, v in (params if params is not None else params_of(model)).items()}
    if mask is None:
        mask = torch.ones(support.shape[:2], dtype=torch.bool, device=support.device)
    fixed = None if context is None else context_expand(context, support.shape[0])  # leaves (T, ...)
    if steps <= 0:
        with torch.no_grad():
            ctx = fixed if fixed is not None else task_context(model, params, support, mask, conditional)
        return Adapted(model, params, ctx, per_task=False)

    inner = dc_replace(inner or InnerConfig(), steps=steps, lr=lr, first_order=True, optimizer=optimizer,
                       conditional=conditional, random_steps=False, on_step=on_step)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    noise = draw_support_noise(model, support, steps, g, inner)  # leaves (T, ...)
    lrs = None if lrs is None else {k: v.detach() for k, v in lrs.items()}

    def one(sup: Tensor, msk: Tensor, nz: dict[str, Tensor] | None, ctx: Context | None) -> tuple[Params, Context]:
        phi = fine_tune_task(model, params, sup, msk, nz, inner, lrs, ctx)
        if ctx is not None:
            return phi, ctx
        return phi, {k: v[0] for k, v in task_context(model, phi, sup[None], msk[None], conditional).items()}

    # One task runs as a loop of one: the same computation without vmap's batching overhead
    # (the Adam update alone is hundreds of small ops a step; 10 steps ~20% faster measured).
    vectorize = vectorize and model.vmappable and support.shape[0] > 1
    with torch.no_grad():  # torch.func.grad still computes the inner gradients
        phi, ctx = map_tasks(one, (support, mask, noise, fixed), (True,) * 4, vectorize)
    return Adapted(model, phi, ctx, per_task=True)


def adapted_nll(adapted: Adapted, x: Tensor, num_samples: int = 100, chunk: int = 25,
                generator: torch.Generator | None = None) -> Tensor:
    """-log p(x | adapted task) in nats for x (T, N, *X) -> (T, N).

    Per-task parameters run in one ``torch.func.vmap`` over the task axis (each task draws its
    own importance samples).
    """
    m = adapted.model
    with torch.no_grad():
        if not adapted.per_task:
            return call(m, adapted.params, "nll", x, adapted.context, num_samples, chunk, generator)

        def one(p: Params, xt: Tensor, ct: Context) -> Tensor:
            return call(m, p, "nll", xt[None], {k: v[None] for k, v in ct.items()}, num_samples, chunk, generator)[0]

        return map_tasks(one, (adapted.params, x, adapted.context), (True, True, True), m.vmappable,
                         randomness="different")


def adapted_sample(adapted: Adapted, n: int, generator: torch.Generator | None = None, **kwargs: Any) -> Tensor:
    """n samples for each adapted task, (T, n, *X).

    Per-task parameters are sampled task by task (a loop over tasks, never over examples):
    autoregressive samplers write their output in place, which ``vmap`` cannot batch.
    """
    m = adapted.model
    with torch.no_grad():
        if not adapted.per_task:
            return call(m, adapted.params, "sample", n, adapted.context, generator, **kwargs)
        rows = [call(m, a.params, "sample", n, a.context, generator, **kwargs)
                for a in (adapted.task(t) for t in range(adapted.num_tasks))]
        return torch.cat(rows)


# ----------------------------------------------------------------------------- checkpoints
def fresh_model(model: GenerativeModel, seed: int = 0) -> GenerativeModel:
    """A new model of the same family and sizes with a fresh random init (seeded, without
    touching the global random state): the *scratch* baseline's starting point."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        new = model_from_dict(model.family, model.config_dict())
    return new.to(next(model.parameters()).device).eval()


def adapter_for_checkpoint(ck: "Checkpoint", algo: str | None = None, lr: float | None = None,
                           seed: int = 0, train: TrainConfig | None = None) -> AdaptFn:
    """The adaptation function of a checkpoint: ``(support, mask, steps, on_step=None) -> Adapted``.

    ``algo`` (default: the algorithm the checkpoint was trained with, ``ck.info["algo"]``)
    decides whether the model reads the support's context (amortized, hybrid) or the empty
    set's (maml, fomaml, reptile, transfer), and the inner optimiser (Reptile's ``sgd``/``adam``).
    maml, fomaml, reptile and hybrid fine-tune with the inner loop they were meta-learned
    for (SGD at ``train.inner_lr``, or Reptile's optimiser); amortized, transfer and scratch
    fine-tune with Adam at ``eval.finetune_lr``, as one would fine-tune any model. Both adapt
    ``train.adapt_params`` with the checkpoint's augmentation and step selection
    (:func:`~fewgen.meta.inner.inner_config`); ``train`` (default: the checkpoint's training
    config) overrides them at test time.
    ``algo="scratch"`` replaces the weights with a fresh seeded init, fine-tuned on the shots.
    The inner learning rate is ``lr``, else the checkpoint's Meta-SGD rates, else its
    ``train.inner_lr``. An adapted checkpoint (``ck.info["adapted"]``) keeps its stored
    context and fine-tunes further from its own weights.
    """
    from .meta import CONDITIONAL

    ft = fine_tuning(ck, algo, lr, train)
    model = fresh_model(ck.model, seed) if ft.fresh else ck.model
    inner = inner_config(ft.train)
    if ft.rates is not None and set(ft.rates) != set(adapt_variables(model, params_of(model), inner)):
        raise ConfigError(f"the checkpoint's Meta-SGD rates are for train.adapt_params="
                          f"{ck.config.train.adapt_params}, not {ft.train.adapt_params}; give --lr for one scalar rate")
    stored = stored_context(ck.tensors) if ck.info.get("adapted") else None  # checked by checkpoint.load

    def fn(support: Tensor, mask: Tensor, steps: int, on_step: Callable[[int], None] | None = None) -> Adapted:
        return adapt(model, support, mask, conditional=ft.algo in CONDITIONAL, steps=steps, lr=ft.step_size,
                     lrs=ft.rates, optimizer=ft.optimizer, generator=torch.Generator().manual_seed(seed),
                     context=stored, inner=inner, on_step=on_step)

    return fn


@dataclass(frozen=True)
class FineTuning:
    """How a checkpoint is fine-tuned at test time (:func:`fine_tuning`)."""

    algo: str
    train: TrainConfig  # the fine-tuning options, "auto" resolved for ``algo`` and the model's data
    fresh: bool  # scratch: a fresh seeded init replaces the weights
    step_size: float
    optimizer: str  # sgd | adam
    rates: Params | None  # the checkpoint's Meta-SGD per-parameter rates, used instead of step_size


def fine_tuning(ck: "Checkpoint", algo: str | None = None, lr: float | None = None,
                train: TrainConfig | None = None) -> FineTuning:
    """How ``algo`` (default: the checkpoint's) fine-tunes checkpoint ``ck`` with the options
    ``train`` (default: the checkpoint's).

    maml, fomaml, reptile and hybrid repeat the inner loop they were meta-learned for (SGD at
    ``train.inner_lr``, Reptile's optimiser, or the checkpoint's learned per-parameter rates);
    the others fine-tune with Adam at ``eval.finetune_lr``. ``lr`` overrides the step size (and
    the learned rates); scratch on a checkpoint not yet adapted starts from a fresh init, which
    has no learned rates."""
    from .meta import META_LEARNED_INNER, resolve_fine_tuning

    algo = algo or ck.info.get("algo", (train or ck.config.train).algo)
    tc = resolve_fine_tuning(train or ck.config.train, ck.model.modality, algo)
    fresh = algo == "scratch" and not ck.info.get("adapted")  # an adapted scratch model keeps its weights
    rates = None if lr is not None or fresh else inner_lrs(ck.tensors)
    if algo in META_LEARNED_INNER:  # the inner loop the init was meta-learned for
        step, optimizer = (tc.inner_lr if lr is None else lr), (tc.reptile_inner if algo == "reptile" else "sgd")
    else:  # plain fine-tuning, as a user would do it
        step, optimizer = (ck.config.eval.finetune_lr if lr is None else lr), "adam"
    return FineTuning(algo, tc, fresh, step, optimizer, rates)


def steps_note(ck: "Checkpoint", algo: str | None, steps: Sequence[int]) -> str | None:
    """A note when fine-tuning runs more steps than the checkpoint's inner loop was meta-trained for
    (maml, fomaml, reptile, hybrid): beyond them, nothing trained the initialisation for it."""
    from .meta import META_LEARNED_INNER

    algo = algo or ck.info.get("algo", ck.config.train.algo)
    trained = ck.config.train.inner_steps
    beyond = sorted(s for s in steps if s > trained)
    if algo not in META_LEARNED_INNER or not beyond or ck.info.get("adapted"):
        return None
    return (f"steps {','.join(map(str, beyond))} exceed the {trained} inner step(s) {algo} was meta-trained for "
            f"(train.inner_steps{', drawn uniformly in 1..' + str(trained) if ck.config.train.inner_steps_random else ''})")


def adapt_checkpoint(ck: "Checkpoint", support_files: Sequence[str | Path], out: str | Path, steps: int = 0,
                     lr: float | None = None, algo: str | None = None, seed: int = 0,
                     train: TrainConfig | None = None) -> tuple[Path, int]:
    """Adapt a checkpoint to one distribution given by the user's support files and save the
    result as a self-contained checkpoint at ``out`` (what ``fewgen adapt`` does).

    The adapted weights become the model's weights; the context goes into the checkpoint's
    tensors (``"context.<key>"``, each (1, ...)) beside any Meta-SGD rates; ``info["adapted"]`` is True and
    ``info["adaptation"]`` records how. Returns the folder and the number of support examples.
    """
    from .errors import FewgenError
    from .support import read_support

    if Path(out).resolve() == ck.path.resolve():
        raise FewgenError(f"{out} is the checkpoint being adapted; write the adapted checkpoint to a new folder")
    support = read_support(support_files, ck.model.modality, ck.config.data, getattr(ck.model, "max_len", 0),
                           str(ck.path), getattr(ck.model, "channels", 1))
    mask = torch.ones(1, len(support), dtype=torch.bool)
    ft = fine_tuning(ck, algo, lr, train)
    a = adapter_for_checkpoint(ck, ft.algo, lr, seed, train)(support[None], mask, steps).task(0)  # T = 1
    tc = ft.train
    info = {"from": str(ck.path), "steps": steps, "lr": "meta-sgd (per parameter)" if ft.rates else ft.step_size,
            "optimizer": ft.optimizer, "algo": ft.algo, "shots": len(support), "seed": seed,
            "support": [str(f) for f in support_files],
            "adapt_params": tc.adapt_params, "augment": tc.inner_augment, "select": tc.inner_select}
    return save_adapted(ck, a, out, info), len(support)


def save_adapted(ck: "Checkpoint", adapted: Adapted, out: str | Path, info: dict[str, Any]) -> Path:
    """Save one adapted task (``adapted``, T = 1) of checkpoint ``ck`` as a self-contained checkpoint
    at ``out``: its weights, its context (tensors ``context.<key>``), and ``info`` on how it was made."""
    from .checkpoint import save

    model = model_from_dict(ck.model.family, ck.model.config_dict())
    model.load_state_dict({**ck.model.state_dict(), **adapted.params})  # buffers too (e.g. counted tables)
    history = list(ck.info.get("adaptation_history", [])) + [info]
    run_info = {**ck.info, "algo": info["algo"], "adapted": True, "adaptation": info, "adaptation_history": history}
    kept = {k: v for k, v in ck.tensors.items() if not k.startswith(CONTEXT_PREFIX)}
    tensors = {**kept, **{CONTEXT_PREFIX + k: v.contiguous() for k, v in adapted.context.items()}}
    path = save(out, model, ck.config, run_info, tensors)
    model.export_files(path)  # e.g. hf_causal_lm's PEFT adapter folder
    return path


CONTEXT_PREFIX = "context."  # checkpoint tensors holding an adapted checkpoint's stored context


def stored_context(tensors: dict[str, Tensor], model: GenerativeModel | None = None, where: str = "") -> Context:
    """The context stored in an adapted checkpoint's tensors (see :func:`adapt_checkpoint`),
    checked against what ``model`` (when given) makes (:func:`check_context`; ``where`` names the file)."""
    from .errors import CheckpointError

    ctx = {k[len(CONTEXT_PREFIX):]: v for k, v in tensors.items() if k.startswith(CONTEXT_PREFIX)}
    if not ctx:
        raise CheckpointError("adapted checkpoint without a stored context (made by a fewgen before contract v2, "
                              "whose context was one flat tensor): re-run `fewgen adapt` on the original checkpoint")
    if model is not None:
        check_context(model, ctx, where)
    return ctx


def empty_examples(model: GenerativeModel, k: int = 0) -> Tensor:
    """``k`` all-zero examples of the model's kind (K, *X): images (C, S, S), byte strings (max_len,)
    or toy vectors (dim,)."""
    if model.modality == "image":
        return torch.zeros(k, model.channels, model.image_size, model.image_size)
    if model.modality == "text":
        return torch.zeros(k, model.max_len, dtype=torch.long)
    return torch.zeros(k, model.dim)


def check_context(model: GenerativeModel, ctx: Context, where: str) -> None:
    """A CheckpointError when a stored one-task context is not one ``model`` could have made: its
    keys, dtypes and the sizes that do not grow with the support (the model's own contexts of
    one and of two shots tell which do) must match, and its floats must be finite."""
    from .errors import CheckpointError

    with torch.no_grad():
        one, two = (model.context(empty_examples(model, k)[None], torch.ones(1, k, dtype=torch.bool)) for k in (1, 2))
    if set(ctx) != set(one):
        raise CheckpointError(f"{where}: the stored context has entries {sorted(ctx)}, the model needs {sorted(one)}")
    for key, want in one.items():
        got = ctx[key]
        fixed = [a if a == b else None for a, b in zip(want.shape, two[key].shape)]  # None: grows with K
        fits = got.dim() == want.dim() and got.shape[0] == 1 and got.dtype == want.dtype and all(
            f is None or f == g for f, g in zip(fixed[1:], got.shape[1:]))
        if not fits:
            shape = "(1, " + ", ".join("any" if f is None else str(f) for f in fixed[1:]) + ")"
            raise CheckpointError(f"{where}: stored context '{key}' is {got.dtype} {tuple(got.shape)}; "
                                  f"the model needs {want.dtype} {shape}")
        if got.is_floating_point() and not bool(got.isfinite().all()):
            raise CheckpointError(f"{where}: stored context '{key}' holds NaN or infinite values")
