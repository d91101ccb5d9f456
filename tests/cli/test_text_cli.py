"""Text through the real command line: train -> sample -> adapt -> eval -> data show, on a tiny model."""

import json

import pytest

from fewgen.cli import main
from fewgen.metrics.text import is_valid

TINY = ["--set", "model.family=text_lm", "--set", "model.hidden=32", "--set", "model.context=32", "--set", "model.extra={embed=16}",
        "--set", "train.meta_batch=4", "--set", "train.val_every=10", "--set", "train.val_tasks=4",
        "--set", "train.log_every=5", "--set", "data.max_examples_per_task=60", "--quiet"]
SUPPORT = ["ĉirkaŭ", "ŝipo", "ĝardeno", "мир", "漢字", "hello", "ðoʊ"]


@pytest.fixture(scope="module")
def words_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("text") / "run"
    assert main(["train", "--data", "words:en,fr,de,es,it,pt", "--out", str(out), "--steps", "12",
                 "--shots", "10", *TINY]) == 0
    return out


def _read_utf8_lines(path):
    return path.read_bytes().decode("utf-8").splitlines()  # strict: raises on invalid UTF-8


def test_train_picks_the_text_model(words_run):
    cfg = json.loads((words_run / "resolved_config.json").read_text())
    assert cfg["model"]["family"] == "text_lm" and cfg["train"]["shots"] == 10


def test_sample_writes_one_valid_utf8_sample_a_line(words_run, tmp_path, capsys):
    sup = tmp_path / "examples.txt"
    sup.write_text("\n".join(SUPPORT[:4]) + "\n", encoding="utf-8")
    sup2 = tmp_path / "more.txt"
    sup2.write_text("\n".join(SUPPORT[4:]) + "\n\n", encoding="utf-8")  # several files, a blank line
    out = tmp_path / "samples.txt"
    assert main(["sample", str(words_run), "--support", str(sup), str(sup2), "--n", "20",
                 "--temperature", "0.8", "--out", str(out)]) == 0
    lines = _read_utf8_lines(out)
    assert len(lines) == 20 and all(is_valid(s) for s in lines)
    # Same seed, same samples; stdout when --out is omitted or '-'.
    capsys.readouterr()
    assert main(["sample", str(words_run), "--support", str(sup), str(sup2), "--n", "20",
                 "--temperature", "0.8"]) == 0
    assert capsys.readouterr().out.splitlines() == lines
    assert main(["sample", str(words_run), "--support", str(sup), "--n", "3", "--out", "-", "--temperature", "0"]) == 0
    greedy = capsys.readouterr().out.splitlines()
    assert len(greedy) == 3 and len(set(greedy)) == 1  # temperature 0 is greedy


def test_adapted_text_checkpoint_samples_without_support(words_run, tmp_path):
    sup = tmp_path / "examples.txt"
    sup.write_text("\n".join(SUPPORT) + "\n", encoding="utf-8")
    adapted = tmp_path / "adapted"
    assert main(["adapt", str(words_run), "--support", str(sup), "--steps", "2", "--out", str(adapted)]) == 0
    out = tmp_path / "s.txt"
    assert main(["sample", str(adapted), "--n", "8", "--out", str(out)]) == 0
    lines = _read_utf8_lines(out)
    assert len(lines) == 8 and all(is_valid(s) for s in lines)


def test_sample_rejects_bad_text_support(words_run, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\xfe\n")
    assert main(["sample", str(words_run), "--support", str(bad), "--n", "2"]) == 2
    assert "not valid UTF-8" in capsys.readouterr().err
    assert main(["sample", str(words_run), "--n", "2"]) == 2  # a trained checkpoint needs a support


def test_eval_json_has_bits_per_char_and_sample_metrics(words_run, tmp_path):
    js = tmp_path / "eval.json"
    assert main(["eval", str(words_run), "--split", "all", "--shots", "1,5,10", "--steps", "0,1",
                 "--max-tasks", "3", "--max-examples", "30", "--samples", "5", "--json", str(js), "--quiet"]) == 0
    r = json.loads(js.read_text())
    entries = [r["unconditional"], *r["shots"].values(), *(e for per_k in r["steps"].values() for e in per_k.values())]
    assert set(r["shots"]) == {"1", "5", "10"} and set(r["steps"]) == {"0", "1"} and len(entries) == 10
    for e in entries:
        assert set(e) >= {"nll_nats", "ci95", "tasks", "queries", "per_task", "bits_per_char", "bits_per_char_ci95"}
        assert e["tasks"] == 3 and 0 < e["bits_per_char"] < 20
    s = r["samples"]
    assert s["shots"] == 10 and s["steps"] == 1 and s["tasks"] == 3 and s["training_strings"] > 0
    assert 0 <= s["novelty"] <= 1 and s["validity"] == 1.0
    assert all(len(t["samples"]) == 5 and len(t["support"]) == 10 for t in s["per_task"].values())


def test_eval_text_fidelity(words_run, tmp_path, capsys):
    js = tmp_path / "fid.json"
    assert main(["eval", str(words_run), "--split", "all", "--shots", "3", "--max-tasks", "3", "--max-examples", "40",
                 "--samples", "6", "--metrics", "nll,fidelity", "--json", str(js), "--quiet"]) == 0
    assert "fidelity:" in capsys.readouterr().out
    s = json.loads(js.read_text())["samples"]
    assert s["fidelity_tasks"] == 3 and s["fidelity_chance"] == pytest.approx(1 / 3)
    for key in ("fidelity", "fidelity_same_script", "fidelity_real", "fidelity_real_same_script"):
        assert 0 <= s[key] <= 1
    assert s["fidelity_real_same_script"] >= s["fidelity_real"]


def test_text_folder_eval_and_show(words_run, tmp_path, capsys):
    root = tmp_path / "texts"
    root.mkdir()
    (root / "greek.txt").write_text("\n".join("alpha beta gamma delta epsilon zeta eta theta".split()), encoding="utf-8")
    (root / "ru.txt").write_text("\n".join("один два три четыре пять шесть семь восемь".split()), encoding="utf-8")
    (root / "eo.txt").write_text("\n".join("ĉirkaŭ ŝipo ĝardeno ĵaŭdo ŭo eĥo aŭto ĉu".split()), encoding="utf-8")
    js = tmp_path / "eval.json"
    assert main(["eval", str(words_run), "--data", f"text:{root}", "--split", "all", "--shots", "1,5",
                 "--json", str(js), "--quiet"]) == 0
    r = json.loads(js.read_text())
    assert r["data"] == f"text:{root}" and r["shots"]["5"]["tasks"] == 3
    assert set(r["shots"]["1"]["per_task_bits_per_char"]) == {"greek", "ru", "eo"}
    assert r["samples"]["validity"] == 1.0 and set(r["samples"]["per_task"]) == {"greek", "ru", "eo"}

    capsys.readouterr()
    assert main(["data", "show", f"text:{root}", "--out", "-", "--examples", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and any(line.startswith("ru (8 examples): ") for line in out)
    assert main(["data", "show", "words:en,fr", "--out", str(tmp_path / "t.txt"), "--examples", "5"]) == 0
    shown = _read_utf8_lines(tmp_path / "t.txt")
    assert len(shown) == 2 and all(len(line.split(": ", 1)[1].split(" | ")) == 5 for line in shown)


def test_eval_text_reports_scripts_sensitivity_and_the_baseline(words_run, tmp_path, capsys):
    root = tmp_path / "scripts"
    root.mkdir()
    words = {"el": "άλφα βήτα γάμμα δέλτα έψιλον ζήτα ήτα θήτα ιώτα κάπα",
             "ru": "один два три четыре пять шесть семь восемь девять десять",
             "uk": "один два три чотири пʼять шість сім вісім девʼять десять",
             "eo": "unu du tri kvar kvin ses sep ok naŭ dek"}
    for name, text in words.items():
        (root / f"{name}.txt").write_text("\n".join(text.split()), encoding="utf-8")
    js = tmp_path / "eval.json"
    assert main(["eval", str(words_run), "--data", f"text:{root}", "--split", "all", "--shots", "1,3",
                 "--samples", "6", "--metrics", "nll,fidelity", "--json", str(js), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "bits/char by script: CYRILLIC (2 tasks)" in out and "support sensitivity" in out
    assert "baseline: trigram + support trigram" in out
    r = json.loads(js.read_text())
    for entry in (r["unconditional"], r["shots"]["3"]):
        assert entry["by_script"]["CYRILLIC"]["tasks"] == 2 and set(entry["by_script"]) == {"CYRILLIC", "GREEK", "LATIN"}
        cyr = [entry["per_task_bits_per_char"][t] for t in ("ru", "uk")]
        assert entry["by_script"]["CYRILLIC"]["bits_per_char"] == pytest.approx(sum(cyr) / 2)
    s = r["samples"]
    assert s["by_script"]["GREEK"]["fidelity_chance_same_script"] == 1.0 and "fidelity_same_script" in s["by_script"]["LATIN"]
    sens = s["sensitivity"]
    assert sens["pairs"] == 4 and sens["per_pair"]["ru"]["partner"] == "uk" and 0 <= sens["identical"] <= 1
    assert 0 <= sens["edit_distance"] <= 1 and sens["edit_distance_real"] > 0.5
    b = r["baseline"]
    assert b["name"].startswith("trigram") and b["fit"]["train_strings"] > 0
    assert set(b["shots"]) == {"1", "3"} and b["shots"]["3"]["tasks"] == 4 and "by_script" in b["unconditional"]
    assert "sensitivity" in b["samples"] and b["samples"]["fidelity_tasks"] == 4
    assert main(["eval", str(words_run), "--data", f"text:{root}", "--split", "all", "--shots", "1", "--samples", "0",
                 "--no-baseline", "--json", str(js), "--quiet"]) == 0
    assert "baseline" not in json.loads(js.read_text())


def test_data_show_draws_tasks_as_meta_training_augments_them(tmp_path, capsys):
    """--set data.task_augment=... (or --augment) shows the transformed tasks: the same seeded
    examples, reversed here; without it the data as it is."""
    root = tmp_path / "texts"
    root.mkdir()
    (root / "ru.txt").write_text("\n".join("один два три четыре пять шесть".split()), encoding="utf-8")
    (root / "eo.txt").write_text("\n".join("ĉirkaŭ ŝipo ĝardeno ĵaŭdo eĥo aŭto".split()), encoding="utf-8")
    capsys.readouterr()
    assert main(["data", "show", f"text:{root}", "--out", "-", "--examples", "4"]) == 0
    plain = capsys.readouterr().out.splitlines()[:2]
    assert main(["data", "show", f"text:{root}", "--out", "-", "--examples", "4",
                 "--set", "data.task_augment=reverse@1"]) == 0
    flipped = capsys.readouterr().out.splitlines()[:2]
    for a, b in zip(plain, flipped):
        head, words = a.split(": ", 1)
        assert b == f"{head}: " + " | ".join(w[::-1] for w in words.split(" | "))
    assert main(["data", "show", f"text:{root}", "--out", "-", "--set", "data.task_augment=rot90"]) == 2
    assert "rot90" in capsys.readouterr().err  # an image transform on text: one line naming it
