"""The one contract every generator implements.

Meta-algorithms and metrics use only this interface, so a new model family is one file.
Parameters are data: a model is run through :func:`call` with a ``dict[str, Tensor]`` of
parameters (``torch.func.functional_call``), so MAML can differentiate through an inner loop
and ``torch.func.vmap`` can run over the task axis.

Shapes: ``T`` tasks, ``K`` shots, ``N`` examples, ``*X`` one example's shape.

- ``context(support (T,K,*X), mask (T,K) bool) -> Context``: an encoding of the present shots;
  an empty support (all False, or K = 0) gives the unconditional context. A :data:`Context` is
  a pytree, ``dict[str, Tensor]``, every leaf with a leading task axis T; the family documents
  its keys and nothing outside the family looks inside. ``vmap``, ``functional_call``, task
  chunks, sharding and adapted checkpoints (tensors ``context.<key>``) pass it through as is.
  Families whose context is invariant to the order of the shots say so with
  ``permutation_invariant = True`` (the contract tests check it); those that read the support
  as an ordered prefix set it False and say why.
- ``loss(x (T,N,*X), context, noise) -> (T,N)``: the training objective in nats per
  example (an upper bound on -log p(x | support), e.g. the negative ELBO). ``noise`` comes
  from :meth:`draw_noise` so the loss is a pure function (vmap- and grad-friendly).
- ``nll(x, context, num_samples, chunk, generator) -> (T,N)``: the evaluation estimate of
  -log p(x | support) in nats (importance-weighted for latent-variable models), computed in
  chunks whose memory does not grow with the data set.
- ``sample(n, context, generator, **options) -> (T,n,*X)``; ``sample_options(eval_config)`` gives
  the options that the eval config chooses (a family owns its sampler's settings and defaults).
- ``episode_loss(support, mask, query, noise) -> (T,N)``: the amortized training objective of
  one episode, per scored example. The default is ``loss(query, context(support, mask), noise)``;
  a family may override it with an equivalent that is cheaper to train (an in-context model
  scores every string of a packed sequence given the strings before it).

A family that cannot run under ``torch.func.vmap`` (e.g. one that tokenises its input in
Python) sets ``vmappable = False``: inner loops and adaptation then run its tasks one at a
time, with the same results. A family may write files of its own beside an adapted checkpoint
(:meth:`GenerativeModel.export_files`, e.g. a PEFT adapter folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..config import EvalConfig, ModelConfig, parse_table
from ..errors import ConfigError

Params = dict[str, Tensor]
Context = dict[str, Tensor]  # a family's encoding of a support set; every leaf (T, ...)


@dataclass(frozen=True)
class NoExtra:
    """The ``model.extra`` of a family that has no keys of its own."""

    def validate(self, hidden: int) -> None:
        """Nothing to check."""


class GenerativeModel(nn.Module):
    """Base class of every generator family (see the module docstring for the contract)."""

    family: str = ""
    modality: str = ""
    Extra: type = NoExtra  # the family's model.extra keys: a frozen dataclass with validate(hidden) (parse_extra)
    permutation_invariant: bool = True  # the context does not depend on the order of the shots
    vmappable: bool = True  # False: tasks run in a Python loop instead of torch.func.vmap
    weight_average: float = 0.0  # train.ema "auto": the weight average's decay measured to sample better (0 = none)

    def forward(self, method: str, *args: Any, **kwargs: Any) -> Any:  # dispatch: functional_call reaches any method
        return getattr(self, method)(*args, **kwargs)

    # The contract ------------------------------------------------------------------------
    def context(self, support: Tensor, mask: Tensor) -> Context:
        raise NotImplementedError

    def loss(self, x: Tensor, context: Context, noise: Tensor | None) -> Tensor:
        raise NotImplementedError

    def episode_loss(self, support: Tensor, mask: Tensor, query: Tensor, noise: Tensor | None) -> Tensor:
        """Per-example training loss (T, N) of the queries given the support (see the module docstring)."""
        return self.loss(query, self.context(support, mask), noise)

    def draw_noise(self, x: Tensor, generator: torch.Generator | None) -> Tensor | None:
        """Noise for :meth:`loss` (``None`` for models without latent variables), drawn with
        :func:`fewgen.noise.task_randn` so that multi-process training shards it by task."""
        return None

    def nll(self, x: Tensor, context: Context, num_samples: int, chunk: int,
            generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def sample(self, n: int, context: Context, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def sample_options(self, ecfg: EvalConfig) -> dict[str, Any]:
        """The keyword arguments of :meth:`sample` that the eval config chooses (default: none). A
        family's ``sample`` defaults to the :class:`~fewgen.config.EvalConfig` defaults, so
        ``sample_options(EvalConfig())`` changes nothing: the library and the CLI sample alike."""
        return {}

    def sampler_variants(self, ecfg: EvalConfig) -> list[tuple[str, dict[str, Any]]]:
        """The samplers a sample-quality table reports, as (label, :meth:`sample` keyword arguments),
        the configured one (:meth:`sample_options`) first (default: that one alone)."""
        return [("default", self.sample_options(ecfg))]

    def export_files(self, folder: str | Path) -> None:
        """Files in a format of the family's own, written beside an adapted checkpoint's (default: none)."""

    def config_dict(self) -> dict[str, Any]:
        """The constructor arguments (stored in checkpoints so ``load`` rebuilds the model)."""
        raise NotImplementedError


def context_tasks(context: Context, index: slice | int | Tensor) -> Context:
    """The tasks ``index`` of a context (every leaf indexed on its task axis); an int keeps the axis."""
    if isinstance(index, int):
        index = slice(index, index + 1)
    return {k: v[index] for k, v in context.items()}


def context_expand(context: Context, num_tasks: int) -> Context:
    """A one-task context (every leaf (1, ...)) repeated for ``num_tasks`` tasks (a view)."""
    return {k: v.expand(num_tasks, *v.shape[1:]) for k, v in context.items()}


def exact_nll(model: GenerativeModel, x: Tensor, context: Context, chunk: int) -> Tensor:
    """``nll`` of a family without latent variables: its ``loss`` (exact), ``chunk`` examples per pass."""
    step = max(int(chunk), 1)
    return torch.cat([model.loss(x[:, i : i + step], context, None) for i in range(0, x.shape[1], step)], 1)


def params_of(model: nn.Module) -> Params:
    """The model's parameters as a name -> tensor dict (the live ``nn.Parameter`` objects)."""
    return dict(model.named_parameters())


def call(model: GenerativeModel, params: Params, method: str, *args: Any, **kwargs: Any) -> Any:
    """Run ``model.method(*args, **kwargs)`` with ``params`` in place of the model's own parameters."""
    return functional_call(model, params, (method, *args), kwargs or None, strict=False)


# ----------------------------------------------------------------------------- building
def parse_extra(model_cls: type[GenerativeModel], cfg: ModelConfig) -> Any:
    """``cfg.extra`` as ``model_cls.Extra``, the family's frozen dataclass of its ``model.extra``
    keys (their defaults and allowed values), converted as every config value is
    (:func:`fewgen.config.parse_table`) and validated by its ``validate(model.hidden)``. Every
    error is one line naming the key: an unknown key (with the valid ones), a wrong type, a value
    out of range."""
    extra = parse_table(model_cls.Extra, cfg.extra, "model.extra.", owner=model_cls.family)
    extra.validate(cfg.hidden)
    return extra


def check_heads(heads: int, hidden: int) -> None:
    """A one-line :class:`~fewgen.errors.ConfigError` unless ``model.extra.heads`` is a positive
    integer dividing ``model.hidden`` (a family with attention blocks)."""
    if heads < 1 or hidden % heads:
        raise ConfigError(f"model.extra.heads must be a positive integer dividing model.hidden ({hidden}), "
                          f"got {heads!r}")


def check_byte_tokenizer(family: str, data_meta: dict[str, Any]) -> None:
    """A one-line :class:`~fewgen.errors.ConfigError` unless the data use fewgen's UTF-8 byte tokens."""
    from .bytes import VOCAB_SIZE

    if data_meta.get("vocab_size", VOCAB_SIZE) != VOCAB_SIZE:
        raise ConfigError(f"{family} needs the byte tokenizer (vocab {VOCAB_SIZE}), the data has "
                          f"{data_meta.get('vocab_size')}")
