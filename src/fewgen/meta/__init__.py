"""Meta-learning algorithms, one per file; :func:`get_algorithm` builds one by name.

Amortized (set-conditioned), MAML / first-order MAML (with Meta-SGD), Reptile, the hybrid
(conditioned and fine-tuned) and the transfer baseline are trained; *scratch* needs no training.
All gradient-based ones share one inner loop, :mod:`fewgen.meta.inner`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from ..config import ALGORITHM_NAMES, TrainConfig
from ..errors import ConfigError
from .amortized import Amortized
from .base import MetaAlgorithm
from .baselines import SCRATCH_MESSAGE, Transfer
from .hybrid import Hybrid
from .maml import FOMAML, MAML
from .reptile import Reptile

ALGORITHMS: dict[str, Callable[[TrainConfig], MetaAlgorithm]] = {
    "amortized": Amortized, "maml": MAML, "fomaml": FOMAML, "reptile": Reptile, "hybrid": Hybrid,
    "transfer": Transfer,
}
CONDITIONAL = ("amortized", "hybrid")  # algorithms whose generator reads the support's context
UNTRAINED = ("scratch",)  # baselines with nothing to meta-train
META_LEARNED_INNER = ("maml", "fomaml", "reptile", "hybrid")  # trained through their own inner loop
assert set(ALGORITHMS) | set(UNTRAINED) == set(ALGORITHM_NAMES)  # config.py names them without importing torch


def resolve_fine_tuning(cfg: TrainConfig, modality: str, algo: str | None = None) -> TrainConfig:
    """``cfg`` with ``adapt_params`` and ``inner_select`` "auto" made concrete for ``algo``
    (default ``cfg.algo``) on data of ``modality``. On images an inner loop that is meta-learned
    (maml, fomaml, reptile, hybrid) adapts FiLM scales and shifts and keeps the step with the
    lowest held-out loss: the recipe measured not to overfit one shot on held-out Omniglot
    (all parameters went to NaN after 10 steps from one shot; docs/results.md, "what to adapt
    and when to stop"). Elsewhere (plain fine-tuning: amortized, transfer, scratch; text, where
    it was not measured) all parameters adapt and the last step is kept."""
    meta_learned = (algo or cfg.algo) in META_LEARNED_INNER and modality == "image"
    changes = {}
    if cfg.adapt_params == "auto":
        changes["adapt_params"] = "film" if meta_learned else "all"
    if cfg.inner_select == "auto":
        changes["inner_select"] = "heldout" if meta_learned else "last"
    return dataclasses.replace(cfg, **changes) if changes else cfg


def get_algorithm(cfg: TrainConfig) -> MetaAlgorithm:
    """The algorithm named by ``cfg.algo`` (a name :func:`fewgen.config.validate` accepts)."""
    if cfg.algo in UNTRAINED:
        raise ConfigError(SCRATCH_MESSAGE)
    return ALGORITHMS[cfg.algo](cfg)


__all__ = ["ALGORITHMS", "CONDITIONAL", "META_LEARNED_INNER", "MetaAlgorithm", "UNTRAINED", "get_algorithm",
           "resolve_fine_tuning"]
