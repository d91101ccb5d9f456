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
  Each language is a task; its examples are the words of its top-``WORDS_TOP_N`` list that
  contain a letter and fit in ``WORDS_MAX_LEN`` bytes incl. EOS. Near-twin languages share a
  split group (:data:`WORDS_GROUPS`: Malay and Indonesian, Czech and Slovak, ...), so a held-out
  language is never a dialect of a training one. ``words`` carries its own split
  (:data:`WORDS_SPLIT`): the held-out languages are mostly of the training scripts (six Latin,
  one Cyrillic), because a language in a script no training language has tests something
  easier (taking the script from the support) than the new language in a familiar script that
  users bring; Persian (Arabic script, shared with ar and ur) and Hebrew (a script of its own)
  are held out too and reported apart.
- ``text:PATH``: ``PATH/<task>.txt``, one example per line (UTF-8); a file is a task. Lines
  are stripped and empty lines skipped; lines longer than ``TEXT_MAX_LEN - 1`` bytes are
  dropped (their count is kept in ``TaskSet.meta["dropped_too_long"]``).

Task augmentation for text (letter substitution, new scripts, reversal, mixtures) lives in
:mod:`fewgen.tasks.augment`.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from ..config import DataConfig
from ..errors import DataError
from .base import TaskSet
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


# Near-twins (mutually intelligible, or one language in two standards) are one split group.
WORDS_GROUPS = {"id": "id+ms", "ms": "id+ms", "cs": "cs+sk", "sk": "cs+sk", "da": "da+nb", "nb": "da+nb",
                "bg": "bg+mk", "mk": "bg+mk"}
# The split of the full ``words`` source, by language or group. Test: six Latin-script
# languages of six families (Finnic, Ugric, Malayic, Baltic, West Slavic, Turkic), one
# Cyrillic (Ukrainian), and Persian and Hebrew; validation (selection only): Dutch, Romanian,
# Bulgarian and Macedonian, and Malay (Indonesian's twin: neither is trained on).
WORDS_SPLIT = {"val": ["nl", "ro", "bg+mk", "ms"], "test": ["fi", "hu", "id", "lv", "pl", "tr", "uk", "fa", "he"]}


def _words_split(names: Sequence[str], groups: Sequence[str]) -> dict[str, list[str]]:
    """:data:`WORDS_SPLIT`, with every group none of whose languages is held out in train."""
    held = {x for xs in WORDS_SPLIT.values() for x in xs}
    touched = {g for n, g in zip(names, groups) if n in held or g in held}
    return {"train": sorted(set(groups) - touched), **WORDS_SPLIT}


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
    groups = [WORDS_GROUPS.get(n, n) for n in names]
    meta = tokenizer_meta(WORDS_MAX_LEN) | ({} if arg else {"split": _words_split(names, groups)})
    return TaskSet.from_lists(names, groups, examples, "text", source="words" + (":" + arg if arg else ""), meta=meta)


def read_lines(path: Path) -> list[str]:
    """The non-empty, stripped lines of a UTF-8 file; a clear ``DataError`` for bad bytes."""
    return [text for _, text in read_numbered_lines(path)]


def read_numbered_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the non-empty, stripped lines of a UTF-8 file (numbers from 1)."""
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
            lines.append((number, text))
    return lines


def truncate_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding has at most ``max_bytes`` bytes (cut
    between characters)."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


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
        why = f" ({dropped} line(s) longer than {TEXT_MAX_LEN - 1} bytes left out)" if dropped else ""
        raise DataError(f"text: the .txt files in '{root}' hold no usable lines{why}")
    max_len = max(len(s.encode("utf-8")) + 1 for _, lines in per_task for s in lines)
    names = [name for name, _ in per_task]
    meta = tokenizer_meta(max_len) | {"dropped_too_long": dropped}
    return TaskSet.from_lists(names, names, [encode_batch(lines, max_len) for _, lines in per_task], "text",
                              source=f"text:{arg}", meta=meta)
