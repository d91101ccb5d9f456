"""The support's match cache, shared by the text families (``text_lm``, ``text_transformer``).

At every position of a string, the earlier positions whose previous n tokens equal the
current ones (the start of a string included: the history is padded with BOS) vote for the
token that followed them there; order n's distribution is its votes backed off to order
n-1's, as in prediction by partial matching (Cleary & Witten, 1984). Mixed with a neural
model's next-token distribution it is a cache language model (Kuhn & De Mori, 1990; Grave et
al., 2017): it copies a support's clusters, prefixes and endings from the first shot, with no
training, which a learned encoding of ten strings alone does not do.

A history is an integer code (``history_codes``): equal codes <=> equal histories. Votes are
counted without gradients (they are functions of the token ids only).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .bytes import BOS, EOS, NUM_OUTPUTS, PAD

MATCH_BETA = 1.0  # weight of the order n-1 distribution in the order-n back-off
CODE_BASE = 259  # history codes: sum_i token_i * CODE_BASE**i (exact in int64 up to order 7)


def history_codes(inp: Tensor, order: int, offset: Tensor | None = None) -> Tensor:
    """Integer code of the last ``order`` inputs at every position of ``inp`` (..., L).

    Without ``offset`` the start of ``inp`` is the start of the string (BOS before it). With
    ``offset`` (..., L), each position's distance from the first input of its own string (a
    sequence of several strings), tokens further back than that are read as BOS too.
    """
    code = torch.zeros_like(inp)
    for i in range(order):  # token i positions back
        tok = inp if i == 0 else torch.cat([torch.full_like(inp[..., :i], BOS), inp[..., :-i]], -1)
        if offset is not None:
            tok = torch.where(offset >= i, tok, torch.full_like(tok, BOS))
        code = code * CODE_BASE + tok
    return code


def match_probs(counts: list[Tensor], base: Tensor, beta: float | None = None) -> tuple[list[Tensor], Tensor]:
    """Back-off chain of the match cache: order n's distribution is its counts (..., 257) plus
    ``beta`` (default ``MATCH_BETA``) times order n-1's (the first backs off to ``base``,
    probabilities), normalised. Returns the probabilities of every order and the evidence
    ``log(1 + matches)`` (..., orders)."""
    beta = MATCH_BETA if beta is None else beta
    out, lower = [], base
    for c in counts:
        lower = (c + beta * lower) / (c.sum(-1, keepdim=True) + beta)
        out.append(lower)
    return out, torch.stack([torch.log1p(c.sum(-1)) for c in counts], -1)


def match_log_probs(counts: list[Tensor], base: Tensor, beta: float | None = None) -> tuple[list[Tensor], Tensor]:
    """:func:`match_probs` with log-probabilities."""
    probs, evidence = match_probs(counts, base, beta)
    return [p.log() for p in probs], evidence


@torch.no_grad()
def match_counts(q_codes: list[Tensor], k_codes: list[Tensor], k_next: Tensor, allow: Tensor,
                 dtype: torch.dtype = torch.float32) -> list[Tensor]:
    """Votes (B, Sq, 257) of sources for queries, order 0 first, then one per history order.

    q_codes [(B, Sq)] and k_codes [(B, Sk)]: the history codes of queries and sources, lowest
    order first; k_next (B, Sk): the token that followed each source (PAD: none, no vote);
    allow (B or 1, Sq, Sk) bool: which sources a query may read (e.g. the earlier ones). Order 0
    counts every allowed source (a unigram cache); a match at order n is one at n-1 too.
    """
    B, Sq, Sk = k_next.shape[0], allow.shape[1], k_next.shape[1]
    hit = allow & (k_next != PAD)[:, None, :]  # (B, Sq, Sk)
    target = k_next.clamp(max=EOS)[:, None, :].expand(B, Sq, Sk)
    zeros = torch.zeros(B, Sq, NUM_OUTPUTS, dtype=dtype, device=k_next.device)
    counts = [zeros.scatter_add(2, target, hit.to(dtype))]
    for qc, kc in zip(q_codes, k_codes):
        hit = hit & (qc[..., None] == kc[:, None, :])
        counts.append(zeros.scatter_add(2, target, hit.to(dtype)))
    return counts
