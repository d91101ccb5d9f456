"""Levenshtein edit distance between pairs of strings, vectorised over the pairs.

The distance is the fewest single-character insertions, deletions and substitutions that turn
one string into the other (Levenshtein 1966), over Unicode characters (code points), not bytes.
The dynamic programme runs one row (a character of the first strings) at a time for all pairs
at once; within a row the chain of insertions is a running minimum
(``D[i, j] = j + min_{k <= j} (c[k] - k)``, with ``c`` the row's deletion/substitution costs),
so there is no loop over the characters of the second strings.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def _codes(strings: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Code points of strings, (N, L) padded with -1, and their lengths (N,)."""
    width = max((len(s) for s in strings), default=0)
    ids = torch.full((len(strings), width), -1, dtype=torch.long)
    for row, s in enumerate(strings):
        if s:
            ids[row, : len(s)] = torch.tensor([ord(c) for c in s])
    return ids, torch.tensor([len(s) for s in strings], dtype=torch.long)


def edit_distance(a: Sequence[str], b: Sequence[str]) -> Tensor:
    """Levenshtein distance of each pair ``(a[i], b[i])``: (N,) int64."""
    if len(a) != len(b):
        raise ValueError(f"edit_distance: {len(a)} strings against {len(b)}")
    x, lx = _codes(a)  # (N, La)
    y, ly = _codes(b)  # (N, Lb)
    n, cols = len(a), y.shape[1] + 1
    j = torch.arange(cols)
    row = j.expand(n, cols).clone()  # D[0, j] = j: insert the first j characters
    out = ly.clone()  # pairs whose first string is empty
    for i in range(1, x.shape[1] + 1):
        sub = row[:, :-1] + (x[:, i - 1 : i] != y).long()  # (N, Lb): D[i-1, j-1] + mismatch
        cost = torch.cat([torch.full((n, 1), i), torch.minimum(row[:, 1:] + 1, sub)], 1)  # (N, Lb+1)
        row = j + torch.cummin(cost - j, 1).values  # insertions along the row
        ends = lx == i
        out[ends] = row[ends].gather(1, ly[ends, None])[:, 0]
    return out


def normalized_edit_distance(a: Sequence[str], b: Sequence[str]) -> Tensor:
    """Edit distance over the longer string's length, in [0, 1] (0 for two empty strings): (N,)."""
    longest = torch.tensor([max(len(s), len(t)) for s, t in zip(a, b)], dtype=torch.float64)
    return edit_distance(a, b).double() / longest.clamp(min=1)
