"""Constrained UTF-8 decoding, shared by the byte-level text families.

Samplers that write one byte (or the end of the string, ``EOS``) at a time follow the UTF-8
grammar: a lead byte, then the right number of continuation bytes in the right ranges, no
overlong forms or surrogates, no control characters, ``EOS`` only between characters, at least
one character, and always room to finish within ``max_len``. Every sample then decodes to
valid, non-empty UTF-8. A sampler's loop is::

    logits = logits.masked_fill(~legal_tokens(state, t, max_len), float("-inf"))
    tok = draw_token(logits, temperature, top_p, generator)
    tok = torch.where(done, PAD, tok)          # finished strings are padded
    state, done = advance(state, tok, done)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .bytes import EOS, NUM_OUTPUTS


# States of the decoder's UTF-8 automaton: 0 = between characters; the others expect
# continuation bytes (1: one more; 2: two more; 3: after E0; 4: after ED; 5: three more;
# 6: after F0; 7: after F4; 8: after C2). ALLOWED[s] lists the tokens legal in state s, NEXT[s, b]
# the next state. Control characters (C0, DEL and C1 = C2 80..9F) are never generated:
# examples are single lines, and a control character counts as invalid (metrics.text.validity).
def _utf8_tables() -> tuple[Tensor, Tensor, Tensor]:
    allowed = torch.zeros(9, NUM_OUTPUTS, dtype=torch.bool)
    nxt = torch.zeros(9, NUM_OUTPUTS, dtype=torch.long)
    lead_len = torch.zeros(NUM_OUTPUTS, dtype=torch.long)  # bytes in the character a lead byte starts
    lead_len[0x20:0x7F], lead_len[0xC2:0xE0], lead_len[0xE0:0xF0], lead_len[0xF0:0xF5] = 1, 2, 3, 4
    allowed[0, :256] = lead_len[:256] > 0
    allowed[0, EOS] = True
    nxt[0, 0xC3:0xE0] = 1
    nxt[0, 0xE1:0xF0] = 2
    nxt[0, 0xC2], nxt[0, 0xE0], nxt[0, 0xED] = 8, 3, 4
    nxt[0, 0xF1:0xF4] = 5
    nxt[0, 0xF0], nxt[0, 0xF4] = 6, 7
    for state, (lo, hi, then) in {1: (0x80, 0xC0, 0), 2: (0x80, 0xC0, 1), 3: (0xA0, 0xC0, 1),
                                  4: (0x80, 0xA0, 1), 5: (0x80, 0xC0, 2), 6: (0x90, 0xC0, 2),
                                  7: (0x80, 0x90, 2), 8: (0xA0, 0xC0, 0)}.items():
        allowed[state, lo:hi] = True
        nxt[state, lo:hi] = then
    return allowed, nxt, lead_len


UTF8_ALLOWED, UTF8_NEXT, UTF8_LEAD_LEN = _utf8_tables()


def legal_tokens(state: Tensor, t: int, max_len: int) -> Tensor:
    """Tokens legal at step ``t`` (0-based) of a string of at most ``max_len`` tokens, EOS
    included, for automaton states ``state`` (B,) -> (B, NUM_OUTPUTS) bool."""
    allowed, lead_len = UTF8_ALLOWED.to(state.device), UTF8_LEAD_LEN.to(state.device)
    room = max_len - t  # positions left incl. this one; a character of n bytes needs n + 1 (EOS)
    ok = allowed[state] & ((state != 0)[:, None] | (lead_len <= room - 1))
    ok[:, EOS] &= (state == 0) & (t > 0 or room == 1)
    return ok


def draw_token(logits: Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> Tensor:
    """One token per row of ``logits`` (B, V) (illegal tokens at -inf): greedy when
    ``temperature <= 0``; ``top_p < 1`` is nucleus sampling (Holtzman et al. 2020): the draw is
    from the smallest set of tokens whose probability reaches ``top_p`` (the top one always kept)."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = F.softmax(logits / temperature, -1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p  # the top token is always kept
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p * keep)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def advance(state: Tensor, tok: Tensor, done: Tensor) -> tuple[Tensor, Tensor]:
    """The automaton after ``tok`` (B,) (PAD once ``done``): the new states and done flags."""
    state = torch.where(done, state, UTF8_NEXT.to(state.device)[state, tok.clamp(max=EOS)])
    return state, done | (tok == EOS)
