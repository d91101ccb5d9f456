"""An exponential moving average of the meta-parameters (``train.ema``), for validation and checkpoints.

Diffusion models are judged by their samples, and the samples of the raw weights of a run of
a few thousand steps carry the last steps' noise; the average of the recent weights (Polyak
averaging, as every DDPM since Ho et al. 2020 uses) samples better. With a decay ``d`` the
average after step n is ``a <- b a + (1 - b) w`` with ``b = min(d, (1 + n) / (10 + n))``: the
warm-up of TensorFlow's ExponentialMovingAverage, so that early on the average is not stuck
near the initialisation. Training itself never sees the average: the optimiser steps the raw
weights; validation, the best checkpoint and the resume state use or carry the average.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor


class WeightAverage:
    """The moving average of ``params`` (live tensors, updated in place by an optimiser)."""

    def __init__(self, params: dict[str, Tensor], decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"the average's decay must be in (0, 1), got {decay}")
        self.params, self.decay = params, decay
        self.average = {k: v.detach().clone() for k, v in params.items()}

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the weights after optimiser step ``step`` (1-based)."""
        b = min(self.decay, (1 + step) / (10 + step))
        for k, v in self.params.items():
            self.average[k].lerp_(v.detach(), 1 - b)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The averaged weights in the live parameters for the block, the raw ones back after it."""
        raw = {k: v.detach().clone() for k, v in self.params.items()}
        with torch.no_grad():
            for k, v in self.params.items():
                v.copy_(self.average[k])
        try:
            yield
        finally:
            with torch.no_grad():
                for k, v in self.params.items():
                    v.copy_(raw[k])

    def state_dict(self) -> dict[str, Tensor]:
        """The average, for the resume state."""
        return {k: v.clone() for k, v in self.average.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the average saved by :meth:`state_dict` (same names and shapes)."""
        if set(state) != set(self.average):
            raise KeyError("the saved weight average has other parameters than this model")
        for k, v in state.items():
            self.average[k].copy_(v)
