"""The words and text:PATH sources."""

import pytest
import torch

from fewgen.config import DataConfig
from fewgen.errors import DataError
from fewgen.tasks.spec import SOURCES
from fewgen.tasks.text import EOS, PAD, WORDS_MAX_LEN, decode_batch, load_text, load_words


def test_sources_are_registered():
    assert {"words", "text"} <= set(SOURCES)


def test_words_three_languages():
    ts = load_words("en,fr,ru", DataConfig(max_examples_per_task=200))
    assert ts.names == ["en", "fr", "ru"] and ts.groups == ts.names
    assert ts.modality == "text" and ts.counts.tolist() == [200, 200, 200]
    assert ts.data.shape == (600, WORDS_MAX_LEN) and ts.data.dtype == torch.int64
    assert ts.meta["pad_id"] == PAD and ts.meta["eos_id"] == EOS and ts.meta["max_len"] == WORDS_MAX_LEN
    ru = decode_batch(ts.examples(2))
    assert all(w and not w.isdigit() for w in ru)
    assert sum(any("а" <= c <= "я" for c in w) for w in ru) > 150  # Cyrillic words
    assert all(any(c.isalpha() for c in w) for w in decode_batch(ts.data))


def test_words_splits_are_disjoint_by_language():
    ts = load_words("en,fr,de,es,it,ru", DataConfig(max_examples_per_task=20))
    parts = ts.split((0.5, 0.2, 0.3), seed=1)
    names = [set(parts[s].names) for s in ("train", "val", "test")]
    assert all(names) and not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert set().union(*names) == set(ts.names)
    assert ts.split((0.5, 0.2, 0.3), seed=1)["test"].names == parts["test"].names  # deterministic


def test_words_bad_language():
    with pytest.raises(DataError, match="xx"):
        load_words("en,xx", DataConfig())


def test_text_folder(tmp_path):
    (tmp_path / "eo.txt").write_text("ĉirkaŭ\n\n  ĝardeno  \r\nŝipo\n", encoding="utf-8")
    (tmp_path / "ja.txt").write_text("日本\n東京\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("ignored\n", encoding="utf-8")
    ts = load_text(str(tmp_path), DataConfig())
    assert ts.names == ["eo", "ja"] and ts.modality == "text"
    assert decode_batch(ts.examples(0)) == ["ĉirkaŭ", "ĝardeno", "ŝipo"]
    assert decode_batch(ts.examples(1)) == ["日本", "東京"]
    assert ts.meta["max_len"] == len("ĉirkaŭ".encode()) + 1


def test_text_bad_utf8_names_file_and_line(tmp_path):
    (tmp_path / "ok.txt").write_text("a\n", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes(b"fine\n\xff\xfeoops\n")
    with pytest.raises(DataError, match=r"bad\.txt: line 2"):
        load_text(str(tmp_path), DataConfig())


def test_text_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no .txt"):
        load_text(str(tmp_path), DataConfig())
    with pytest.raises(DataError, match="not found"):
        load_text(str(tmp_path / "missing"), DataConfig())
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match="no non-empty"):
        load_text(str(tmp_path), DataConfig())


def test_permute_scripts_keeps_utf8_and_makes_new_scripts():
    from fewgen.tasks.base import stack_tasks, Task
    from fewgen.tasks.text import encode_batch, permute_scripts

    words = ["ĉirkaŭ", "привет", "漢字", "ðoʊ", "hello", "𝔘𝔫", "한국어", "é"]
    ids = encode_batch(words, 16)
    ep = stack_tasks([Task(str(i), ids[:4], ids[4:]) for i in range(6)])
    out = permute_scripts(ep, torch.Generator().manual_seed(0), p=1.0)
    changed = 0
    for t in range(6):
        sup, qry = decode_batch(out.support[t]), decode_batch(out.query[t])
        new = sup + qry
        assert all(w.encode("utf-8").decode("utf-8") == w and "\ufffd" not in w for w in new)
        assert [len(w.encode()) for w in new] == [len(w.encode()) for w in words]  # lengths kept
        assert new[4] == "hello"  # ASCII untouched
        assert len(set(new)) == len(words)  # a bijection: distinct words stay distinct
        changed += new != words
    assert changed == 6
    assert torch.equal(out.support_mask, ep.support_mask) and out.names == ep.names
    same = permute_scripts(ep, torch.Generator().manual_seed(0), p=0.0)
    assert torch.equal(same.support, ep.support) and torch.equal(same.query, ep.query)
