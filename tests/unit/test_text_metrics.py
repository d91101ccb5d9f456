"""Text metrics: bits per Unicode character, novelty, validity."""

import math

import pytest
import torch

from fewgen.metrics.text import bits_per_char, char_counts, is_valid, novelty, validity
from fewgen.models.bytes import encode_batch


def test_char_counts_count_characters_not_bytes():
    ids = encode_batch(["abc", "ĝŭ", "漢字x", ""], 12)
    assert char_counts(ids).tolist() == [4, 3, 4, 1]  # characters + 1 for EOS
    assert char_counts(ids.reshape(2, 2, 12)).tolist() == [[4, 3], [4, 1]]


def test_bits_per_char_is_total_bits_over_total_chars():
    ids = encode_batch(["ab", "ĝĝĝĝ"], 12)  # 3 and 5 symbols, 3 and 9 tokens
    nats = torch.tensor([3.0, 5.0]) * math.log(2)  # 3 bits and 5 bits
    assert bits_per_char(nats, ids).item() == pytest.approx(8 / 8)
    per_task = bits_per_char(torch.stack([nats, 2 * nats]), torch.stack([ids, ids]))
    assert per_task.tolist() == pytest.approx([1.0, 2.0])


def test_novelty():
    assert novelty(["a", "b", "c", "d"], ["a"], ["b", "x"]) == 0.5
    assert novelty(["z"], [], []) == 1.0
    assert math.isnan(novelty([], ["a"], []))


def test_validity():
    assert is_valid("ĉirkaŭ") and is_valid("漢字".encode())
    assert not is_valid("") and not is_valid(b"\xc3") and not is_valid("a\x00b") and not is_valid("\ud800")
    assert not is_valid("a\ufffd")
    assert validity(["ok", "", "fine", b"\xff"]) == 0.5
    assert math.isnan(validity([]))
