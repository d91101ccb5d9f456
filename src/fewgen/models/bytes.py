"""The byte-level tokenizer of the text families: any UTF-8 in, valid UTF-8 out.

Tokens are the 256 byte values plus three special ids, so every script and letter (ð, ĝ, ŭ,
Cyrillic, CJK, ...) is covered with no unknown token and no information lost, including letters
never seen in training.

- ``encode(str)`` gives the UTF-8 bytes followed by ``EOS``; ``encode_batch`` pads with ``PAD``.
- ``decode(ids)`` reads up to the first ``EOS``/``PAD``, skips ``BOS`` and decodes the bytes
  with ``errors="replace"``: an invalid byte sequence becomes U+FFFD, so the result is always
  valid UTF-8 whatever the ids. (Model samples never need the replacement: the text families
  decode under a UTF-8 grammar constraint, see :mod:`fewgen.models.utf8`.)
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

# Ids 0..255 are bytes. EOS comes right after them so a model's output classes are 0..EOS.
EOS = 256
BOS = 257
PAD = 258
VOCAB_SIZE = 259  # input vocabulary (bytes + EOS + BOS + PAD)
NUM_OUTPUTS = EOS + 1  # what a model predicts: a byte or the end of the string


def encode(text: str) -> list[int]:
    """The token ids of one string: its UTF-8 bytes then ``EOS``."""
    try:
        return list(text.encode("utf-8")) + [EOS]
    except UnicodeEncodeError as e:  # lone surrogates cannot be written as UTF-8
        raise ValueError(f"text is not encodable as UTF-8: {e}") from None


def decode(ids: Sequence[int] | Tensor) -> str:
    """The string of one id sequence; always valid UTF-8 (invalid bytes become U+FFFD)."""
    ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
    out = bytearray()
    for i in ids:
        if i == EOS or i == PAD:
            break
        if 0 <= i < 256:
            out.append(i)
        elif i != BOS:
            raise ValueError(f"token id {i} is outside the vocabulary 0..{VOCAB_SIZE - 1}")
    return out.decode("utf-8", errors="replace")


def encode_batch(strings: Sequence[str], max_len: int) -> Tensor:
    """``(N, max_len)`` int64 ids, each row ``bytes + EOS`` padded with ``PAD``.

    A string whose bytes plus EOS do not fit in ``max_len`` is a ``ValueError``.
    """
    out = torch.full((len(strings), max_len), PAD, dtype=torch.long)
    for row, s in enumerate(strings):
        ids = encode(s)
        if len(ids) > max_len:
            raise ValueError(f"'{s[:40]}' needs {len(ids)} tokens incl. EOS; max_len is {max_len}")
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def decode_batch(ids: Tensor) -> list:
    """The inverse of :func:`encode_batch`: ``(..., L)`` ids -> nested lists of strings."""
    if ids.dim() < 2:
        raise ValueError(f"decode_batch expects (..., L) ids, got shape {tuple(ids.shape)}")
    if ids.dim() == 2:
        return [decode(row) for row in ids.tolist()]
    return [decode_batch(sub) for sub in ids]


def tokenizer_meta(max_len: int) -> dict:
    """The tokenizer facts a model needs, stored in ``TaskSet.meta``."""
    return {"tokenizer": "utf8-bytes", "vocab_size": VOCAB_SIZE, "num_outputs": NUM_OUTPUTS,
            "eos_id": EOS, "bos_id": BOS, "pad_id": PAD, "max_len": max_len}
