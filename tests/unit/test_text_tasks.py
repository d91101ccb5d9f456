"""The words and text:PATH sources."""

import pytest
import torch

from fewgen.config import DataConfig
from fewgen.errors import DataError
from fewgen.models.bytes import EOS, PAD, decode_batch
from fewgen.tasks.spec import SOURCES
from fewgen.tasks.text import WORDS_MAX_LEN, load_text, load_words


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
    with pytest.raises(DataError, match="no usable lines"):
        load_text(str(tmp_path), DataConfig())


def test_words_holds_out_languages_of_the_training_scripts():
    from fewgen.metrics.text_fidelity import dominant_script
    from fewgen.tasks.spec import load_split

    cfg = DataConfig(spec="words", max_examples_per_task=200)
    splits = {s: load_split("words", cfg, s) for s in ("train", "val", "test")}
    test, train = splits["test"], splits["train"]
    scripts = {n: dominant_script(decode_batch(test.examples(i))) for i, n in enumerate(test.names)}
    train_scripts = {dominant_script(decode_batch(train.examples(i))) for i in range(len(train))}
    familiar = [n for n, s in scripts.items() if s in ("LATIN", "CYRILLIC")]
    assert len(familiar) >= 7 and len(familiar) > len(test) / 2  # mostly new languages of familiar scripts
    assert {"LATIN", "CYRILLIC", "ARABIC"} <= train_scripts
    groups = set(train.groups)
    assert not any(g in groups for g in test.groups) and "id+ms" not in groups  # no twin of a test language trained
    assert not set(train.names) & set(splits["val"].names)
    rnd = load_split("words", DataConfig(spec="words", split_file="random", max_examples_per_task=5), "test")
    assert set(rnd.names) != set(test.names)  # "random": by fractions, as before
