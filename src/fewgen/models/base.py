"""The one contract every generator implements.

Meta-algorithms and metrics use only this interface, so a new model family is one file.
Parameters are data: a model is run through :func:`call` with a ``dict[str, Tensor]`` of
parameters (``torch.func.functional_call``), so MAML can differentiate through an inner loop
and ``torch.func.vmap`` can run over the task axis.

Shapes: ``T`` tasks, ``K`` shots, ``N`` examples, ``*X`` one example's shape.

- ``context(support (T,K,*X), mask (T,K) bool) -> (T,C)``: a permutation-invariant encoding
  of the present shots; an empty support (all False) gives the unconditional context.
- ``loss(x (T,N,*X), context (T,C), noise) -> (T,N)``: the training objective in nats per
  example (an upper bound on -log p(x | support), e.g. the negative ELBO). ``noise`` comes
  from :meth:`draw_noise` so the loss is a pure function (vmap- and grad-friendly).
- ``nll(x, context, num_samples, chunk, generator) -> (T,N)``: the evaluation estimate of
  -log p(x | support) in nats (importance-weighted for latent-variable models), computed in
  chunks whose memory does not grow with the data set.
- ``sample(n, context, generator) -> (T,n,*X)``.
- ``episode_loss(support (T,K,*X), mask (T,K), query (T,Q,*X), noise) -> (T,Q)``: the amortized
  training objective of one episode; by default ``loss(query, context(support, mask), noise)``.
  A family may override it with a cheaper or richer equivalent (the in-context Transformer
  scores query j given the shots *and* queries 0..j-1 in one packed pass: every K at once).

``permutation_invariant`` says whether ``context`` ignores the order of the shots (a set
encoder) or reads them as a sequence (a prefix); the contract tests check what it claims.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

Params = dict[str, Tensor]


class GenerativeModel(nn.Module):
    """Base class of every generator family (see the module docstring for the contract)."""

    family: str = ""
    modality: str = ""
    permutation_invariant: bool = True  # False where the shots are read in order (a prefix)

    def forward(self, method: str, *args: Any, **kwargs: Any) -> Any:  # dispatch: functional_call reaches any method
        return getattr(self, method)(*args, **kwargs)

    # The contract ------------------------------------------------------------------------
    def context(self, support: Tensor, mask: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, x: Tensor, context: Tensor, noise: Tensor | None) -> Tensor:
        raise NotImplementedError

    def episode_loss(self, support: Tensor, mask: Tensor, query: Tensor, noise: Tensor | None) -> Tensor:
        """The amortized objective of an episode, nats per query (T, Q): the queries' loss given
        the context of the support."""
        return self.loss(query, self.context(support, mask), noise)

    def draw_noise(self, x: Tensor, generator: torch.Generator | None) -> Tensor | None:
        """Noise for :meth:`loss` (``None`` for models without latent variables), drawn with
        :func:`fewgen.tasks.base.task_randn` so that multi-process training shards it by task."""
        return None

    def nll(self, x: Tensor, context: Tensor, num_samples: int, chunk: int,
            generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def sample(self, n: int, context: Tensor, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def config_dict(self) -> dict[str, Any]:
        """The constructor arguments (stored in checkpoints so ``load`` rebuilds the model)."""
        raise NotImplementedError


def params_of(model: nn.Module) -> Params:
    """The model's parameters as a name -> tensor dict (the live ``nn.Parameter`` objects)."""
    return dict(model.named_parameters())


def call(model: GenerativeModel, params: Params, method: str, *args: Any, **kwargs: Any) -> Any:
    """Run ``model.method(*args, **kwargs)`` with ``params`` in place of the model's own parameters."""
    return functional_call(model, params, (method, *args), kwargs or None, strict=False)
