"""Interpolated back-off n-gram tables over integer token sequences, fit by counting.

Shared by the character n-gram model family (:mod:`fewgen.models.text_ngram`) and the text
fidelity metric's language identifier (:mod:`fewgen.metrics.text_fidelity`).

An order-n model predicts a token w from the m = n - 1 tokens h before it and backs off to
shorter histories. For every history length m = 0 .. n-1 and every (history, next) pair seen
in the data, a table holds the *interpolated* probability

    P_m(w | h) = alpha_m(h, w) + gamma_m(h) * P_{m-1}(w | h')      (h' = h without its oldest token)

which ends in the uniform distribution over the O outputs (P_{-1} = 1 / O), and for every seen
history its back-off weight gamma_m(h). A pair that was not seen has alpha = 0, so
P_m(w | h) = gamma_m(h) P_{m-1}(w | h') (gamma = 1 for a history never seen): a lookup takes the
longest stored pair and multiplies in the gammas of the longer histories (:func:`log_prob`).
Smoothing (Chen & Goodman 1998, both interpolated):

- ``witten_bell`` (Witten & Bell 1991): alpha = c(h, w) / (c(h) + T(h)), gamma = T(h) / (c(h) + T(h)),
  T(h) the number of distinct tokens seen after h.
- ``kneser_ney`` (Kneser & Ney 1995): alpha = max(c(h, w) - D, 0) / c(h), gamma = D T(h) / c(h);
  below the top order c counts *continuations* (the distinct tokens seen before (h', w)), and
  each order has its discount D = n1 / (n1 + 2 n2) (n_i: pairs seen exactly i times).

Codes: the history of m tokens ending at a position is ``sum_i tok_{-i} * base**i`` (the most
recent token the lowest digit, so dropping the oldest is ``code % base**(m-1)``); a pair's key
is ``history * O + next``. Tables are sorted, and lookups are ``torch.searchsorted``: any
number of positions against any number of stored pairs, with no Python loop over tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

SMOOTHING = ("witten_bell", "kneser_ney")
_CODE_LIMIT = 2**62


@dataclass(frozen=True)
class NgramTables:
    """The tables of one n-gram model (index m = history length, 0 .. order-1)."""

    keys: tuple[Tensor, ...]  # (U_m,) int64, sorted: history code * outputs + next token
    log_prob: tuple[Tensor, ...]  # (U_m,) interpolated log P_m(next | history)
    hists: tuple[Tensor, ...]  # (H_m,) int64, sorted history codes
    log_gamma: tuple[Tensor, ...]  # (H_m,) log back-off weight of each history
    base: int  # history code base (the number of input tokens)
    outputs: int  # O, the number of tokens predicted

    @property
    def order(self) -> int:
        return len(self.keys)


def history_codes(inp: Tensor, m: int, base: int, start: int) -> Tensor:
    """Code of the m inputs ending at every position of ``inp`` (..., L), the history of the
    token predicted there; before the first input it reads ``start``. m = 0 gives zeros."""
    code, L = torch.zeros_like(inp), inp.shape[-1]
    for i in range(m - 1, -1, -1):  # oldest first: the most recent token ends up the lowest digit
        k = min(i, L)  # the input i positions back: ``start`` before the first
        tok = torch.cat([torch.full_like(inp[..., :k], start), inp[..., : L - k]], -1)
        code = code * base + tok
    return code


def check_codes(order: int, base: int, outputs: int) -> None:
    """A ValueError if the keys of an order-``order`` model would overflow int64."""
    if base ** max(order - 1, 0) * outputs >= _CODE_LIMIT:
        raise ValueError(f"n-gram order {order} over {base} tokens overflows 64-bit codes")


def _discount(counts: Tensor) -> float:
    """Kneser-Ney's discount n1 / (n1 + 2 n2) (Ney et al. 1994), kept within [0.05, 0.95]."""
    n1, n2 = float((counts == 1).sum()), float((counts == 2).sum())
    return min(max(n1 / (n1 + 2 * n2), 0.05), 0.95) if n1 + n2 > 0 else 0.5


def _find(sorted_keys: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    """Index of every query in ``sorted_keys`` and whether it is there: q (...) -> two (...)."""
    if sorted_keys.numel() == 0:
        return torch.zeros_like(q), torch.zeros_like(q, dtype=torch.bool)
    idx = torch.searchsorted(sorted_keys, q.contiguous()).clamp(max=sorted_keys.numel() - 1)
    return idx, sorted_keys[idx] == q


def fit(hist: Sequence[Tensor], target: Tensor, base: int, outputs: int, smoothing: str = "witten_bell",
        dtype: torch.dtype = torch.float32) -> NgramTables:
    """Count events and build the tables: ``hist[m]`` (E,) the length-m history code of every
    event (:func:`history_codes`), ``target`` (E,) its next token in 0 .. outputs-1."""
    if smoothing not in SMOOTHING:
        raise ValueError(f"unknown n-gram smoothing '{smoothing}'; valid: {', '.join(SMOOTHING)}")
    n = len(hist)
    check_codes(n, base, outputs)
    raw = [torch.unique(h * outputs + target, return_counts=True) for h in hist]
    keys = [k for k, _ in raw]
    counts = [c.double() for _, c in raw]
    if smoothing == "kneser_ney":  # lower orders count continuations: distinct tokens before (h', w)
        for m in range(n - 2, -1, -1):
            k = keys[m + 1]
            suffix = (k // outputs) % base**m * outputs + k % outputs
            counts[m] = torch.unique(suffix, return_counts=True)[1].double()  # the same sorted keys as keys[m]
    log_probs, hists, log_gammas = [], [], []
    prev_keys, prev_p = None, None
    for m in range(n):
        h, w = keys[m] // outputs, keys[m] % outputs
        hu, inv, types = torch.unique_consecutive(h, return_inverse=True, return_counts=True)
        total = torch.zeros(len(hu), dtype=torch.float64).index_add_(0, inv, counts[m])
        types = types.double()
        if smoothing == "kneser_ney":
            d = _discount(counts[m])
            alpha, gamma = (counts[m] - d).clamp(min=0) / total[inv], d * types / total
        else:
            alpha, gamma = counts[m] / (total + types)[inv], types / (total + types)
        if m == 0:
            lower = torch.full_like(alpha, 1.0 / outputs)
        else:  # the same pair with the oldest history token dropped: always stored one order down
            lower = prev_p[torch.searchsorted(prev_keys, (h % base ** (m - 1)) * outputs + w)]
        p = alpha + gamma[inv] * lower
        prev_keys, prev_p = keys[m], p
        log_probs.append(p.log().to(dtype))
        hists.append(hu)
        log_gammas.append(gamma.log().to(dtype))
    return NgramTables(tuple(keys), tuple(log_probs), tuple(hists), tuple(log_gammas), base, outputs)


def log_prob(tables: NgramTables, hist: Sequence[Tensor], target: Tensor) -> Tensor:
    """log P(target | history) for histories ``hist[m]`` (...) (m = 0 .. order-1) and targets
    broadcastable with them; e.g. ``hist[m][..., None]`` and ``torch.arange(O)`` give the whole
    distribution (..., O)."""
    o = tables.outputs
    shape = torch.broadcast_shapes(hist[0].shape, target.shape)
    out = torch.full(shape, -math.log(o), dtype=tables.log_prob[0].dtype if tables.order else torch.float32,
                     device=target.device)
    for m in range(tables.order):
        h = hist[m].expand(shape)
        i, found = _find(tables.keys[m], h * o + target)
        j, seen = _find(tables.hists[m], h)
        backed = out + torch.where(seen, tables.log_gamma[m][j] if tables.hists[m].numel() else 0.0, 0.0)
        out = torch.where(found, tables.log_prob[m][i] if tables.keys[m].numel() else 0.0, backed)
    return out
