"""Task augmentation (fewgen.tasks.augment): each transform makes a consistent new task."""

import pytest
import torch

from fewgen.config import DataConfig, apply_overrides, Config
from fewgen.errors import ConfigError
from fewgen.models.bytes import decode_batch, encode_batch
from fewgen.tasks import augment as A
from fewgen.tasks.base import Episode, Task, stack_tasks

WORDS = ["ĉirkaŭ", "привет", "漢字", "ðoʊ", "Hello", "𝔘𝔫", "한국어", "é", "hello", "Привет", "a1-b", "Ÿes"]


def _text_episode(tasks: int = 6) -> Episode:
    ids = encode_batch(WORDS, 20)
    return stack_tasks([Task(str(i), ids[:6], ids[6:]) for i in range(tasks)])


def _words(ep: Episode, t: int) -> list[str]:
    return decode_batch(ep.support[t]) + decode_batch(ep.query[t])


def test_script_keeps_utf8_and_makes_new_scripts():
    ep = _text_episode()
    out = A.permute_script(ep, torch.Generator().manual_seed(0), p=1.0)
    for t in range(6):
        new = _words(out, t)
        assert "\ufffd" not in "".join(new)
        assert [len(w.encode()) for w in new] == [len(w.encode()) for w in WORDS]  # lengths kept
        assert new[4] == "Hello" and new[8] == "hello"  # ASCII untouched
        assert len(set(new)) == len(WORDS) and new != WORDS  # a bijection, and a new script
    same = A.permute_script(ep, torch.Generator().manual_seed(0), p=0.0)
    assert torch.equal(same.support, ep.support) and torch.equal(same.query, ep.query)


def test_letters_substitute_within_script_keeping_case_vowels_and_utf8():
    ep = _text_episode()
    out = A.substitute_letters(ep, torch.Generator().manual_seed(1), p=1.0)
    vowels = set("aeiouy")
    changed = 0
    for t in range(6):
        new = _words(out, t)
        assert "\ufffd" not in "".join(new)
        assert [len(w.encode()) for w in new] == [len(w.encode()) for w in WORDS]
        assert len(set(new)) == len(WORDS)  # distinct words stay distinct
        hello, Hello = new[8], new[4]
        assert Hello == hello[0].upper() + hello[1:]  # one substitution for both cases, support and query alike
        assert new[9] == new[1][0].upper() + new[1][1:]  # Cyrillic too: привет / Привет
        assert all((a in vowels) == (b in vowels) for a, b in zip("hello", hello))
        assert hello.isascii() and hello.isalpha() and hello.islower()  # Latin letters stay Latin letters
        assert new[10][1:3] == "1-" and new[2] == "漢字" and new[6] == "한국어"  # digits, signs, 3-byte scripts kept
        changed += new != WORDS
    assert changed == 6


def test_letters_and_script_are_reproducible_and_p_chooses_tasks():
    ep = _text_episode(64)
    a = A.substitute_letters(ep, torch.Generator().manual_seed(3), p=0.5)
    b = A.substitute_letters(ep, torch.Generator().manual_seed(3), p=0.5)
    assert torch.equal(a.support, b.support) and torch.equal(a.query, b.query)
    moved = sum(_words(a, t) != WORDS for t in range(64))
    assert 16 < moved < 48


def test_reverse_writes_backwards_by_character():
    ep = _text_episode(8)
    out = A.reverse_strings(ep, torch.Generator().manual_seed(0), p=1.0)
    for t in range(8):
        assert _words(out, t) == [w[::-1] for w in WORDS]
    assert (out.support >= 256).sum() == (ep.support >= 256).sum()  # EOS and PAD where they were


def test_mix_takes_slots_from_a_partner_task():
    x = torch.arange(8).float().reshape(8, 1, 1).expand(8, 10, 3).clone()  # task t's examples are all t
    ep = Episode(x[:, :4], torch.ones(8, 4, dtype=torch.bool), x[:, 4:], tuple("abcdefgh"))
    out = A.mix_tasks(ep, torch.Generator().manual_seed(0), p=1.0)
    for t in range(8):
        vals = torch.cat([out.support[t, :, 0], out.query[t, :, 0]]).unique().tolist()
        assert float(t) in vals and len(vals) == 2  # itself and exactly one other task
        assert out.names[t].startswith(ep.names[t] + "+")
    assert A.mix_tasks(ep, torch.Generator().manual_seed(0), p=1e-9).names == ep.names


def test_image_transforms_keep_range_and_shapes():
    g = torch.Generator().manual_seed(0)
    gray = torch.rand(6, 5, 1, 8, 8, generator=g)
    ep = Episode(gray[:, :2], torch.ones(6, 2, dtype=torch.bool), gray[:, 2:], tuple("abcdef"))
    inv = A.invert(ep, torch.Generator().manual_seed(0), p=1.0)
    assert torch.allclose(inv.support, 1 - ep.support)
    assert torch.equal(A.permute_channels(ep, g).support, ep.support)  # grayscale: nothing to permute
    rgb = torch.rand(6, 5, 3, 8, 8, generator=g)
    ep = Episode(rgb[:, :2], torch.ones(6, 2, dtype=torch.bool), rgb[:, 2:], tuple("abcdef"))
    ch = A.permute_channels(ep, torch.Generator().manual_seed(0))
    assert torch.equal(ch.support.sort(2).values, ep.support.sort(2).values)
    hue = A.rotate_hue(ep, torch.Generator().manual_seed(0))
    assert hue.support.shape == ep.support.shape and 0 <= hue.support.min() and hue.support.max() <= 1
    grey = rgb[..., :1, :, :].expand_as(rgb)  # R = G = B: a hue rotation keeps grey grey
    ep = Episode(grey[:, :2], torch.ones(6, 2, dtype=torch.bool), grey[:, 2:], tuple("abcdef"))
    assert torch.allclose(A.rotate_hue(ep, torch.Generator().manual_seed(0)).support, ep.support, atol=1e-5)


def test_config_names_resolve_per_modality():
    assert A.resolve(("default",), "image") == A.DEFAULTS["image"]
    assert A.resolve(("default", "reverse@0.1"), "text") == A.DEFAULTS["text"] + ("reverse@0.1",)
    with pytest.raises(ConfigError, match="letters.*text data, not image"):
        A.resolve(("letters",), "image")
    assert A.task_augmenter(DataConfig(task_augment=()), "text") is None
    assert A.task_augmenter(DataConfig(augment=False), "image") is None
    cfg = apply_overrides(Config(), ["data.task_augment=letters@0.3,mix"])
    assert cfg.data.task_augment == ("letters@0.3", "mix")
    for bad in ("letterz", "letters@0", "letters@1.5", "mix@x"):
        with pytest.raises(ConfigError, match="data.task_augment"):
            apply_overrides(Config(), [f"data.task_augment={bad}"])
