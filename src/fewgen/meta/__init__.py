"""Meta-learning algorithms, one per file; :func:`get_algorithm` builds one by name.

Amortized (set-conditioned), MAML / first-order MAML (with Meta-SGD), Reptile, the hybrid
(conditioned and fine-tuned) and the transfer baseline are trained; *scratch* needs no training.
All gradient-based ones share one inner loop, :mod:`fewgen.meta.inner`.
"""

from __future__ import annotations

from typing import Callable

from ..config import TrainConfig
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


def get_algorithm(cfg: TrainConfig) -> MetaAlgorithm:
    """The algorithm named by ``cfg.algo``."""
    if cfg.algo == "scratch":
        raise ConfigError(SCRATCH_MESSAGE)
    if cfg.algo not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm '{cfg.algo}'; valid: {', '.join(sorted(ALGORITHMS))} "
                          "(and scratch, which needs no training)")
    return ALGORITHMS[cfg.algo](cfg)


__all__ = ["ALGORITHMS", "CONDITIONAL", "META_LEARNED_INNER", "MetaAlgorithm", "UNTRAINED", "get_algorithm"]
