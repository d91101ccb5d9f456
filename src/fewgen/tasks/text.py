"""Text tasks: the ``words`` and ``text:PATH`` sources, tokenized by the byte-level tokenizer
of :mod:`fewgen.models.bytes` (the UTF-8 bytes of a string, then ``EOS``).

Sources (listed in :data:`fewgen.tasks.spec.SOURCES`):

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

from ..config import DataConfig
from ..errors import DataError
from ..models.bytes import encode_batch, tokenizer_meta
from .base import TaskSet
from .source import user_path

WORDS_TOP_N = 3000  # words taken from the top of each language's frequency list (before filtering)
WORDS_MAX_LEN = 24  # bytes per word incl. EOS; longer words are dropped
TEXT_MAX_LEN = 256  # bytes per line incl. EOS for text:PATH; longer lines are dropped


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
