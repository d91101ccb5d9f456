"""The byte tokenizer: any UTF-8 in, the same text out; any ids in, valid UTF-8 out."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fewgen.models.bytes import BOS, EOS, PAD, VOCAB_SIZE, decode, decode_batch, encode, encode_batch

SCRIPTS = ["ð", "ĝ", "ŭ", "ĉirkaŭ", "þjóð", "привет", "Ёлка", "漢字", "日本語のテキスト", "한국어", "مرحبا",
           "नमस्ते", "🙂👍🏽", "e\u0301", "a"]


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_arbitrary_text_round_trips(text):
    ids = encode(text)
    assert ids[-1] == EOS and all(0 <= i < 256 for i in ids[:-1])
    assert decode(ids) == text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, VOCAB_SIZE - 1), max_size=40))
def test_decode_of_arbitrary_ids_is_valid_utf8(ids):
    out = decode(ids)
    assert isinstance(out, str)
    assert out.encode("utf-8").decode("utf-8") == out  # raises on lone surrogates


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=10), min_size=1, max_size=8))
def test_encode_batch_round_trips(strings):
    ids = encode_batch(strings, 41)
    assert ids.shape == (len(strings), 41) and ids.dtype == torch.int64
    assert decode_batch(ids) == strings


@pytest.mark.parametrize("text", SCRIPTS)
def test_unseen_scripts_round_trip_without_unknown_token(text):
    ids = encode_batch([text, text], 64)
    assert decode_batch(ids) == [text, text]
    assert decode_batch(ids[None]) == [[text, text]]


def test_padding_and_specials():
    ids = encode_batch(["ab", ""], 5)
    assert ids.tolist() == [[97, 98, EOS, PAD, PAD], [EOS, PAD, PAD, PAD, PAD]]
    assert decode([BOS, 104, 105, EOS, 120]) == "hi"  # BOS skipped, nothing after EOS
    assert decode([0xC3]) == "\ufffd"  # a truncated character is replaced, not dropped silently


def test_too_long_and_bad_input_are_errors():
    with pytest.raises(ValueError, match="max_len"):
        encode_batch(["ĝĝĝ"], 6)  # 6 bytes + EOS
    assert encode_batch(["ĝĝĝ"], 7).shape == (1, 7)
    with pytest.raises(ValueError):
        encode("\ud800")
    with pytest.raises(ValueError):
        decode([VOCAB_SIZE])
    with pytest.raises(ValueError):
        decode_batch(torch.tensor([1, 2]))
