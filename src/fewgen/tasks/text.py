"""Text tasks: a byte-level tokenizer and the ``words`` and ``text:PATH`` sources.

Any UTF-8 in, valid UTF-8 out. Tokens are the 256 byte values plus three special ids, so
every script and letter (ð, ĝ, ŭ, Cyrillic, CJK, ...) is covered with no unknown token and
no information lost, including letters never seen in training.

- ``encode(str)`` gives the UTF-8 bytes followed by ``EOS``; ``encode_batch`` pads with ``PAD``.
- ``decode(ids)`` reads up to the first ``EOS``/``PAD``, skips ``BOS`` and decodes the bytes
  with ``errors="replace"``: an invalid byte sequence becomes U+FFFD, so the result is always
  valid UTF-8 whatever the ids. (Model samples never need the replacement: the text model
  decodes under a UTF-8 grammar constraint, see :mod:`fewgen.models.text_lm`.)

Sources (registered in :mod:`fewgen.tasks.spec`):

- ``words`` / ``words:LANG,LANG,...``: the word lists of the ``wordfreq`` package (offline).
  Each language is a task (and its own split group); its examples are the words of its
  top-``WORDS_TOP_N`` list that contain a letter and fit in ``WORDS_MAX_LEN`` bytes incl. EOS.
- ``text:PATH``: ``PATH/<task>.txt``, one example per line (UTF-8); a file is a task. Lines
  are stripped and empty lines skipped; lines longer than ``TEXT_MAX_LEN - 1`` bytes are
  dropped (their count is kept in ``TaskSet.meta["dropped_too_long"]``).

Augmentation (:func:`permute_scripts`, an ``Augment``): a task rewritten in a new "script" by
a random byte permutation that keeps UTF-8 valid, so meta-training sees scripts it cannot
memorise and the model learns to take letters from the support.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from ..config import DataConfig
from ..errors import DataError
from .base import Episode, TaskSet
from .spec import register, user_path

# ----------------------------------------------------------------------------- tokenizer
# Ids 0..255 are bytes. EOS comes right after them so a model's output classes are 0..EOS.
EOS = 256
BOS = 257
PAD = 258
VOCAB_SIZE = 259  # input vocabulary (bytes + EOS + BOS + PAD)
NUM_OUTPUTS = EOS + 1  # what a model predicts: a byte or the end of the string

WORDS_TOP_N = 3000  # words taken from the top of each language's frequency list (before filtering)
WORDS_MAX_LEN = 24  # bytes per word incl. EOS; longer words are dropped
TEXT_MAX_LEN = 256  # bytes per line incl. EOS for text:PATH; longer lines are dropped


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


# ----------------------------------------------------------------------------- sources
def _has_letter(word: str) -> bool:
    return any(unicodedata.category(c).startswith("L") for c in word)


def _is_clean(word: str) -> bool:
    # No whitespace or control/format characters inside an example.
    return not any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in word)


@lru_cache(maxsize=None)
def _language_words(lang: str, top_n: int, max_len: int) -> tuple[str, ...]:
    import wordfreq

    words = wordfreq.top_n_list(lang, top_n)
    return tuple(w for w in words if _has_letter(w) and _is_clean(w) and len(w.encode("utf-8")) + 1 <= max_len)


def _cap(strings: Sequence[str], cfg: DataConfig) -> Sequence[str]:
    return strings[: cfg.max_examples_per_task] if cfg.max_examples_per_task > 0 else strings


@register("words", "words | words:LANG,...", "frequent words, one language a task, from wordfreq (offline)",
          "words:en,fr,de")
def load_words(arg: str, cfg: DataConfig) -> TaskSet:
    """Each language of ``wordfreq`` is a task whose examples are its frequent words."""
    import wordfreq

    available = sorted(wordfreq.available_languages())
    langs = [a.strip() for a in arg.split(",") if a.strip()] if arg else available
    unknown = [lang for lang in langs if lang not in available]
    if unknown:
        raise DataError(f"words: unknown language '{unknown[0]}'; available: {', '.join(available)}")
    if len(set(langs)) != len(langs):
        raise DataError(f"words: a language is listed twice in '{arg}'")
    names, examples = [], []
    for lang in langs:
        words = _cap(_language_words(lang, WORDS_TOP_N, WORDS_MAX_LEN), cfg)
        if not words:
            continue
        names.append(lang)
        examples.append(encode_batch(words, WORDS_MAX_LEN))
    return TaskSet.from_lists(names, names, examples, "text", source="words" + (":" + arg if arg else ""),
                              meta=tokenizer_meta(WORDS_MAX_LEN))


def read_lines(path: Path) -> list[str]:
    """The non-empty, stripped lines of a UTF-8 file; a clear ``DataError`` for bad bytes."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e.strerror or e})") from None
    lines = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: line {number} is not valid UTF-8 (byte {e.start})") from None
        text = text.strip().lstrip("\ufeff")  # a BOM on the first line is not part of the example
        if text:
            lines.append(text)
    return lines


@register("text", "text:PATH", "your texts: PATH/<task>.txt, one example a line (UTF-8)", "text:./my_texts")
def load_text(arg: str, cfg: DataConfig) -> TaskSet:
    """``PATH/<task>.txt`` files: a file is a task, a line is an example."""
    if not arg:
        raise DataError("text: give a folder, e.g. text:PATH (PATH/<task>.txt, one example per line)")
    root = user_path(arg, "text")
    if not root.is_dir():
        raise DataError(f"text: folder '{root}' not found")
    try:
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix == ".txt")
    except OSError as e:
        raise DataError(f"text: cannot read the folder '{root}' ({e.strerror or e})") from None
    if not files:
        raise DataError(f"text: no .txt files in '{root}' (expected PATH/<task>.txt, one example per line)")
    per_task, dropped = [], 0
    for f in files:
        lines = read_lines(f)
        kept = [s for s in lines if len(s.encode("utf-8")) + 1 <= TEXT_MAX_LEN]
        dropped += len(lines) - len(kept)
        if kept:
            per_task.append((f.stem, _cap(kept, cfg)))
    if not per_task:
        raise DataError(f"text: the .txt files in '{root}' hold no non-empty lines")
    max_len = max(len(s.encode("utf-8")) + 1 for _, lines in per_task for s in lines)
    names = [name for name, _ in per_task]
    meta = tokenizer_meta(max_len) | {"dropped_too_long": dropped}
    return TaskSet.from_lists(names, names, [encode_batch(lines, max_len) for _, lines in per_task], "text",
                              source=f"text:{arg}", meta=meta)


# ----------------------------------------------------------------------------- augmentation
# Byte blocks permuted among themselves. Every permutation keeps UTF-8 valid: lead bytes
# stay in their length class (C2, E0, ED, F0 and F4 stay fixed because they restrict the
# next byte) and continuation bytes stay in 80..8F, 90..9F or A0..BF, the ranges those
# restrictions are made of. ASCII is left alone.
_SCRIPT_BLOCKS = [range(0xC3, 0xE0), [*range(0xE1, 0xED), 0xEE, 0xEF], range(0xF1, 0xF4),
                  range(0x80, 0x90), range(0x90, 0xA0), range(0xA0, 0xC0)]


def permute_scripts(episode: Episode, generator: torch.Generator, p: float = 0.5) -> Episode:
    """With probability ``p`` per task, rewrite its support and query in a new byte "script"
    (one random UTF-8-preserving byte permutation per task; ASCII and special ids unchanged)."""
    T = episode.num_tasks
    maps = torch.arange(VOCAB_SIZE).repeat(T, 1)  # (T, V) token -> token
    for block in _SCRIPT_BLOCKS:
        idx = torch.tensor(list(block))
        perm = torch.rand(T, len(idx), generator=generator).argsort(1)  # (T, n)
        maps[:, idx] = idx[perm]
    apply = torch.rand(T, generator=generator) < p
    maps = torch.where(apply[:, None], maps, torch.arange(VOCAB_SIZE))

    def remap(x: Tensor) -> Tensor:  # (T, M, L)
        return maps.gather(1, x.reshape(T, -1)).reshape(x.shape)

    return dataclasses.replace(episode, support=remap(episode.support), query=remap(episode.query))
