"""Task augmentation: every meta-training task becomes a new task no memorisation covers.

With few training tasks (~29 languages, ~161 Omniglot characters) a meta-learner can learn
each training task and *recognise* it from the support instead of learning to read a new one
(memorisation overfitting: Yin et al. 2020, "Meta-Learning without Memorization"; Rajendran
et al. 2020, "Meta-Learning Requires Meta-Augmentation"). A task augmentation draws one
transform per task from the episode's generator and applies it to all of that task's
examples, support and queries alike, so the transformed task is a new distribution of the
same kind: a rotated character is a new character (Santoro et al. 2016), a language with its
letters substituted is a new language in the same script.

``data.task_augment`` lists the transforms, each ``NAME`` or ``NAME@P`` (P: the probability
that a task is transformed; the default below otherwise), applied in the order listed:

======== ======== ==========================================================================
name     data     a task is transformed by
======== ======== ==========================================================================
letters  text     a bijective substitution of each script's letters (vowels to vowels,
                  consonants to consonants, upper case following lower case), per task
script   text     a UTF-8-preserving permutation of the non-ASCII bytes: a new "script"
reverse  text     writing every string backwards (by characters)
mix      any      mixing in another task of the meta-batch: each example slot is taken from
                  the partner with probability 1/2 (two languages' lists as one task)
rot90    image    a rotation by a uniform multiple of 90 degrees (0 included)
flip     image    a left-right mirror
invert   image    ink inversion (x -> 1 - x)
channels image    a permutation of the RGB channels (colour images only)
hue      image    a rotation of the hue by a uniform angle (colour images only)
======== ======== ==========================================================================

``default`` stands for the modality's measured default (:data:`DEFAULTS`). Augmentation is a
meta-training feature only: validation, evaluation and sampling read the data as it is.
Every transform is a tensor op over the whole meta-batch (no loop over examples), keeps text
valid UTF-8 and image values in their range, and depends only on the generator it is given.
"""

from __future__ import annotations

import dataclasses
import math
import unicodedata
from functools import lru_cache
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..config import TASK_AUGMENTS, DataConfig
from ..errors import ConfigError
from .base import Episode

Transform = Callable[[Episode, torch.Generator, float], Episode]

# The modality's default list (the measured winners: docs/results.md says which run chose them).
DEFAULTS: dict[str, tuple[str, ...]] = {"image": ("rot90", "flip"), "text": ("letters@0.5", "script@0.25", "mix@0.25")}

_BYTES = 256  # token ids below this are UTF-8 bytes; EOS, BOS and PAD come after them


def _chosen(T: int, p: float, g: torch.Generator) -> Tensor:
    """(T,) bool: which tasks a transform of probability p applies to (no draw when p >= 1)."""
    return torch.ones(T, dtype=torch.bool) if p >= 1 else torch.rand(T, generator=g) < p


def _where_task(chosen: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """Per task (dim 0): ``new`` where chosen, else ``old``."""
    return torch.where(chosen.reshape(-1, *([1] * (old.dim() - 1))).to(old.device), new, old)


def _map_examples(ep: Episode, fn: Callable[[Tensor], Tensor], chosen: Tensor) -> Episode:
    """Apply ``fn`` to the support and query (T, M, ...) of the chosen tasks."""
    return dataclasses.replace(ep, support=_where_task(chosen, fn(ep.support), ep.support),
                               query=_where_task(chosen, fn(ep.query), ep.query))


# ----------------------------------------------------------------------------- text
_VOWELS = set("aeiouyæøœåаеёиоуыэюяіїєαεηιουωө")
# The letters a substitution draws from: the everyday letters of the 1- and 2-byte scripts
# (Basic Latin, Latin-1 and Latin Extended-A, Greek, basic Cyrillic, Hebrew, basic Arabic),
# so that a language's letters become other letters its script's languages use, not rare ones.
_SUBSTITUTED = (range(0x41, 0x7B), range(0xC0, 0x180), range(0x370, 0x400), range(0x400, 0x460),
                range(0x5D0, 0x5EB), range(0x620, 0x64B))


@lru_cache(maxsize=1)
def _letter_classes() -> tuple[tuple[Tensor, Tensor | None], ...]:
    """The classes of code points (of :data:`_SUBSTITUTED`, 1- and 2-byte UTF-8) a substitution
    permutes among themselves: letters of one script, one UTF-8 length, one kind (vowel or
    not, from the base letter) and one case role. A cased class is its lower-case letters and
    their upper-case partners ((n,), (n,)); an uncased one has None for partners."""
    groups: dict[tuple, list[int]] = {}
    for cp in (c for block in _SUBSTITUTED for c in block):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if cat not in ("Ll", "Lo"):
            continue
        up = ch.upper()
        cased = (cat == "Ll" and len(up) == 1 and up != ch and up.lower() == ch
                 and any(ord(up) in block for block in _SUBSTITUTED) and len(up.encode("utf-8")) == len(ch.encode("utf-8")))
        if cat == "Ll" and not cased:
            continue  # a lower-case letter without a clean partner stays as it is
        base = unicodedata.normalize("NFD", ch)[0].lower()
        key = (unicodedata.name(ch, "?").split(" ")[0], len(ch.encode("utf-8")), base in _VOWELS, cased)
        groups.setdefault(key, []).append(cp)
    classes = []
    for (_, _, _, cased), cps in sorted(groups.items()):
        if len(cps) > 1:
            lower = torch.tensor(cps)
            classes.append((lower, torch.tensor([ord(chr(c).upper()) for c in cps]) if cased else None))
    return tuple(classes)


def _code_points(x: Tensor) -> tuple[Tensor, Tensor]:
    """Where each 1- or 2-byte character starts in ids x (..., L), and its code point there
    (0 elsewhere): ASCII bytes, and 2-byte leads (C2..DF) followed by a continuation byte."""
    nxt = torch.cat([x[..., 1:], torch.full_like(x[..., :1], _BYTES)], -1)
    ascii_ = x < 0x80
    lead2 = (x >= 0xC2) & (x <= 0xDF) & (nxt >= 0x80) & (nxt <= 0xBF)
    cp = torch.where(ascii_, x, torch.where(lead2, ((x & 0x1F) << 6) | (nxt & 0x3F), torch.zeros_like(x)))
    return ascii_ | lead2, cp


def substitute_letters(ep: Episode, g: torch.Generator, p: float = 0.5) -> Episode:
    """With probability p per task, a bijective substitution of its letters (one permutation
    per class of :func:`_letter_classes`: within a script, a UTF-8 length and vowel or
    consonant; upper case follows lower case), so a language becomes a new language in the
    same script with the same shapes of words. Byte lengths are kept: valid UTF-8 stays valid."""
    T = ep.num_tasks
    table = torch.arange(0x800).repeat(T, 1)  # (T, 2048) code point -> code point
    for lower, upper in _letter_classes():
        perm = torch.rand(T, len(lower), generator=g).argsort(1)  # (T, n)
        table[:, lower] = lower[perm]
        if upper is not None:
            table[:, upper] = upper[perm]
    chosen = _chosen(T, p, g)

    def rewrite(x: Tensor) -> Tensor:  # (T, M, L)
        starts, cp = _code_points(x)
        new = table.to(x.device).gather(1, cp.reshape(T, -1)).reshape(x.shape)
        two = starts & (x >= 0x80)  # 2-byte characters: write the lead here and the continuation next
        out = torch.where(starts & (x < 0x80), new, x)
        out = torch.where(two, 0xC0 | (new >> 6), out)
        cont = torch.cat([torch.zeros_like(two[..., :1]), two[..., :-1]], -1)
        shifted = torch.cat([torch.zeros_like(new[..., :1]), new[..., :-1]], -1)
        return torch.where(cont, 0x80 | (shifted & 0x3F), out)

    return _map_examples(ep, rewrite, chosen)


# Byte blocks permuted among themselves by ``script``. Every permutation keeps UTF-8 valid:
# lead bytes stay in their length class (C2, E0, ED, F0 and F4 stay fixed because they
# restrict the next byte) and continuation bytes stay in 80..8F, 90..9F or A0..BF, the ranges
# those restrictions are made of. ASCII is left alone.
_SCRIPT_BLOCKS = [range(0xC3, 0xE0), [*range(0xE1, 0xED), 0xEE, 0xEF], range(0xF1, 0xF4),
                  range(0x80, 0x90), range(0x90, 0xA0), range(0xA0, 0xC0)]


def permute_script(ep: Episode, g: torch.Generator, p: float = 0.5) -> Episode:
    """With probability p per task, its support and query rewritten in a new byte "script"
    (one random UTF-8-preserving permutation of the non-ASCII bytes; ASCII and special ids
    unchanged): a script no training task uses, so letters must come from the support."""
    T = ep.num_tasks
    maps = torch.arange(_BYTES + 3).repeat(T, 1)  # (T, V) token -> token
    for block in _SCRIPT_BLOCKS:
        idx = torch.tensor(list(block))
        maps[:, idx] = idx[torch.rand(T, len(idx), generator=g).argsort(1)]
    chosen = _chosen(T, p, g)
    return _map_examples(ep, lambda x: maps.to(x.device).gather(1, x.reshape(T, -1)).reshape(x.shape), chosen)


def reverse_strings(ep: Episode, g: torch.Generator, p: float = 0.5) -> Episode:
    """With probability p per task, every string written backwards, character by character
    (the bytes of a multi-byte character keep their order, so UTF-8 stays valid)."""
    chosen = _chosen(ep.num_tasks, p, g)

    def rewrite(x: Tensor) -> Tensor:  # (T, M, L): bytes, then EOS, then PAD
        L = x.shape[-1]
        idx = torch.arange(L, device=x.device).expand_as(x)
        n = (x < _BYTES).sum(-1, keepdim=True)  # bytes before EOS
        inside = idx < n
        start = torch.where(((x & 0xC0) != 0x80) | ~inside, idx, torch.zeros_like(idx)).cummax(-1).values
        is_start = ((x & 0xC0) != 0x80) & inside
        nxt_start = torch.where(is_start, idx, torch.full_like(idx, L)).flip(-1).cummin(-1).values.flip(-1)
        after = torch.cat([nxt_start[..., 1:], torch.full_like(nxt_start[..., :1], L)], -1).clamp(max=n)
        end = torch.where(is_start, after, torch.zeros_like(after))  # where the character starting here ends
        end = end.gather(-1, start)  # (every byte) the end of its character
        dest = torch.where(inside, n - end + (idx - start), idx)
        return torch.empty_like(x).scatter_(-1, dest, x)

    return _map_examples(ep, rewrite, chosen)


# ----------------------------------------------------------------------------- any data
def mix_tasks(ep: Episode, g: torch.Generator, p: float = 0.25) -> Episode:
    """With probability p per task, a mixture of it and a partner task of the same meta-batch:
    each present example slot (support and query) is taken from the partner with probability
    1/2 where the partner has that slot too (a task of two languages' words, or two characters)."""
    T = ep.num_tasks
    if T < 2:
        return ep
    partner = (torch.arange(T) + torch.randint(1, T, (T,), generator=g)) % T  # never the task itself
    chosen = _chosen(T, p, g)
    out = {}
    for key, mask in (("support", ep.support_mask), ("query", ep.query_mask)):
        x = getattr(ep, key)
        coin = torch.rand(mask.shape, generator=g) < 0.5
        take = (coin & chosen[:, None] & mask.cpu() & mask.cpu()[partner]).to(x.device)
        out[key] = torch.where(take.reshape(*take.shape, *([1] * (x.dim() - 2))), x[partner.to(x.device)], x)
    names = tuple(f"{a}+{ep.names[b]}" if c else a for a, b, c in zip(ep.names, partner.tolist(), chosen.tolist()))
    return dataclasses.replace(ep, names=names, **out)


# ----------------------------------------------------------------------------- images
def rotate90(ep: Episode, g: torch.Generator, p: float = 1.0) -> Episode:
    """Each task rotated by a uniform multiple of 90 degrees (with probability p at all)."""
    T = ep.num_tasks
    r = torch.randint(0, 4, (T,), generator=g)
    r = torch.where(_chosen(T, p, g), r, torch.zeros_like(r))
    out = {}
    for key in ("support", "query"):
        x = getattr(ep, key)
        y = x.clone()
        for k in range(1, 4):  # three cases, not a loop over examples
            sel = (r == k).to(x.device)
            if bool(sel.any()):
                y[sel] = torch.rot90(x[sel], k, dims=(-2, -1))
        out[key] = y
    return dataclasses.replace(ep, **out)


def flip(ep: Episode, g: torch.Generator, p: float = 0.5) -> Episode:
    """With probability p per task, its images mirrored left-right."""
    return _map_examples(ep, lambda x: torch.flip(x, dims=(-1,)), _chosen(ep.num_tasks, p, g))


def invert(ep: Episode, g: torch.Generator, p: float = 0.5) -> Episode:
    """With probability p per task, ink inverted: x -> 1 - x (values in [0, 1])."""
    return _map_examples(ep, lambda x: 1 - x, _chosen(ep.num_tasks, p, g))


def permute_channels(ep: Episode, g: torch.Generator, p: float = 1.0) -> Episode:
    """With probability p per task, a uniform permutation of its colour channels (C = 3;
    grayscale images are left as they are)."""
    T = ep.num_tasks
    perm = torch.rand(T, 3, generator=g).argsort(1)  # (T, 3)
    chosen = _chosen(T, p, g)
    if ep.support.shape[-3] != 3:
        return ep

    def rewrite(x: Tensor) -> Tensor:  # (T, M, 3, H, W)
        idx = perm.to(x.device).reshape(T, 1, 3, 1, 1).expand(T, x.shape[1], 3, *x.shape[-2:])
        return x.gather(2, idx)

    return _map_examples(ep, rewrite, chosen)


# RGB <-> YIQ: hue is the angle in the I-Q plane, so a hue rotation is one 3x3 matrix per task.
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def rotate_hue(ep: Episode, g: torch.Generator, p: float = 1.0) -> Episode:
    """With probability p per task, its hue rotated by a uniform angle (C = 3; values clamped
    to [0, 1]; grayscale images are left as they are)."""
    T = ep.num_tasks
    angle = torch.rand(T, generator=g) * 2 * math.pi
    chosen = _chosen(T, p, g)
    if ep.support.shape[-3] != 3:
        return ep
    c, s = angle.cos(), angle.sin()
    rot = torch.zeros(T, 3, 3)
    rot[:, 0, 0], rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = 1, c, -s, s, c
    mats = torch.linalg.inv(_YIQ) @ rot @ _YIQ  # (T, 3, 3) RGB -> RGB

    def rewrite(x: Tensor) -> Tensor:  # (T, M, 3, H, W)
        return torch.einsum("tij,tmjhw->tmihw", mats.to(x), x).clamp(0, 1)

    return _map_examples(ep, rewrite, chosen)


# ----------------------------------------------------------------------------- the list
TRANSFORMS: dict[str, tuple[Transform, float, str]] = {  # name -> (transform, default p, modality or "any")
    "letters": (substitute_letters, 0.5, "text"),
    "script": (permute_script, 0.5, "text"),
    "reverse": (reverse_strings, 0.5, "text"),
    "mix": (mix_tasks, 0.25, "any"),
    "rot90": (rotate90, 1.0, "image"),
    "flip": (flip, 0.5, "image"),
    "invert": (invert, 0.5, "image"),
    "channels": (permute_channels, 1.0, "image"),
    "hue": (rotate_hue, 1.0, "image"),
}
assert set(TRANSFORMS) == set(TASK_AUGMENTS)  # config.py names them without importing torch


def resolve(names: Sequence[str], modality: str) -> tuple[str, ...]:
    """``data.task_augment`` for data of ``modality`` with ``default`` expanded; a transform
    for another modality is a ConfigError naming it."""
    out: list[str] = []
    for item in names:
        if item.partition("@")[0] == "default":
            out.extend(DEFAULTS.get(modality, ()))
            continue
        kind = TRANSFORMS[item.partition("@")[0]][2]
        if kind not in ("any", modality):
            raise ConfigError(f"data.task_augment: '{item}' is for {kind} data, not {modality} "
                              f"(valid for {modality}: {', '.join(valid_for(modality))})")
        out.append(item)
    return tuple(out)


def valid_for(modality: str) -> list[str]:
    """The transform names that apply to data of ``modality``."""
    return [n for n, (_, _, kind) in TRANSFORMS.items() if kind in ("any", modality)]


def task_augmenter(cfg: DataConfig, modality: str) -> Callable[[Episode, torch.Generator], Episode] | None:
    """The meta-training augmentation ``data.task_augment`` asks for (None when empty or
    ``data.augment`` is false): the transforms in order, each drawing from the episode's generator."""
    names = resolve(cfg.task_augment, modality) if cfg.augment else ()
    steps = []
    for item in names:
        name, _, p = item.partition("@")
        fn, default_p, _ = TRANSFORMS[name]
        steps.append((fn, float(p) if p else default_p))
    if not steps:
        return None

    def augment(ep: Episode, g: torch.Generator) -> Episode:
        for fn, p in steps:
            ep = fn(ep, g, p)
        return ep

    return augment
