"""Meta-learning algorithms, one per file; :func:`get_algorithm` builds one by name."""

from __future__ import annotations

from typing import Callable

from ..config import TrainConfig
from ..errors import ConfigError
from .amortized import Amortized
from .base import MetaAlgorithm

ALGORITHMS: dict[str, Callable[[TrainConfig], MetaAlgorithm]] = {"amortized": Amortized}


def get_algorithm(cfg: TrainConfig) -> MetaAlgorithm:
    """The algorithm named by ``cfg.algo``."""
    if cfg.algo not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm '{cfg.algo}'; valid: {', '.join(sorted(ALGORITHMS))}")
    return ALGORITHMS[cfg.algo](cfg)


__all__ = ["ALGORITHMS", "MetaAlgorithm", "get_algorithm"]
