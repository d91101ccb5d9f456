"""Text metrics: bits per character, sample novelty and validity.

Bits per character are per *Unicode character*, not per byte, so scripts that need two or
three UTF-8 bytes a letter are not flattered or penalised. Convention: a string of ``c``
characters is ``c + 1`` symbols, the ``+ 1`` being its end (EOS), which the model also has
to predict; a task's figure is its total bits over its total symbols (not a mean of
per-string ratios):

    bits/char = sum_n nats_n / (ln 2 * sum_n (chars_n + 1))
"""

from __future__ import annotations

import math
import unicodedata
from typing import Iterable, Sequence

from torch import Tensor

from ..models.bytes import EOS


def char_counts(tokens: Tensor) -> Tensor:
    """Unicode characters per string plus one for EOS: ``(..., L)`` ids -> ``(...)`` int64.

    Counts the bytes that start a character (not ``10xxxxxx`` continuation bytes) before the
    end of each string; exact for valid UTF-8.
    """
    is_byte = tokens < EOS
    ended = (tokens >= EOS).cumsum(-1) > 0  # at or after the first EOS / PAD
    starts = is_byte & ~ended & ((tokens & 0xC0) != 0x80)
    return starts.sum(-1) + 1


def bits_per_char(nats: Tensor, tokens: Tensor) -> Tensor:
    """Bits per character of each task: nats ``(..., N)`` per string and their ids ``(..., N, L)``
    -> ``(...)``, total bits over total characters (EOS counted as one character)."""
    chars = char_counts(tokens).to(nats.dtype)
    return nats.sum(-1) / (math.log(2) * chars.sum(-1))


def bits_per_char_examples(nats: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """Per-string bits per character and the character counts that weight them: nats ``(...)``
    and ids ``(..., L)`` -> two ``(...)`` tensors. The chars-weighted mean of the first is
    :func:`bits_per_char` (total bits over total characters); this is the ``per_example`` hook
    of :func:`fewgen.evaluate.evaluate` for text."""
    chars = char_counts(tokens).to(nats.dtype)
    return nats / (math.log(2) * chars), chars


def novelty(samples: Sequence[str], support: Iterable[str], training_strings: Iterable[str]) -> float:
    """Share of samples that are in neither the support set nor the training data (nan if none)."""
    if not samples:
        return float("nan")
    seen = set(support) | set(training_strings)
    return sum(s not in seen for s in samples) / len(samples)


def is_valid(sample: str | bytes) -> bool:
    """Non-empty, valid UTF-8 (no lone surrogates), free of control characters (category Cc)
    and of U+FFFD, the mark :func:`fewgen.models.bytes.decode` leaves for invalid bytes."""
    try:
        text = sample.decode("utf-8") if isinstance(sample, (bytes, bytearray)) else sample
        text.encode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return False
    return bool(text) and "\ufffd" not in text and not any(unicodedata.category(c) == "Cc" for c in text)


def validity(samples: Sequence[str | bytes]) -> float:
    """Share of samples that are valid (see :func:`is_valid`; nan if there are none)."""
    if not samples:
        return float("nan")
    return sum(is_valid(s) for s in samples) / len(samples)
