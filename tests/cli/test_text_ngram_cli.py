"""text_ngram and text fidelity through the real command line, on a tiny word list."""

import json

import pytest

from fewgen.cli import main

DATA = "words:en,fr,de,es,it,pt,nl,sv,pl,ru"
SMALL = ["--set", "data.max_examples_per_task=80", "--quiet"]


@pytest.fixture(scope="module")
def ngram_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ngram") / "run"
    assert main(["train", "--data", DATA, "--out", str(out), "--set", "model.family=text_ngram",
                 "--set", "model.extra={order=3}", *SMALL]) == 0
    return out


def test_train_counts_and_writes_a_checkpoint(ngram_run, capsys):
    cfg = json.loads((ngram_run / "config.json").read_text())
    assert cfg["model"]["family"] == "text_ngram" and cfg["model"]["kwargs"]["order"] == 3
    fit = cfg["extra"]["fit"]
    assert fit["train_strings"] == 7 * 80 and fit["mix_chosen_on"] == "1 meta-val tasks"
    assert (ngram_run / "model.safetensors").exists() and (ngram_run / "metrics.jsonl").exists()
    capsys.readouterr()
    assert main(["train", "--data", DATA, "--out", str(ngram_run.parent / "bad"), "--algo", "maml",
                 "--set", "model.family=text_ngram", *SMALL]) == 2
    assert "fit by counting" in capsys.readouterr().err


def test_eval_fidelity_on_a_tiny_text_run(ngram_run, tmp_path):
    js = tmp_path / "eval.json"
    assert main(["eval", str(ngram_run), "--split", "test", "--shots", "0,5", "--steps", "0,1", "--samples", "8",
                 "--metrics", "nll,fidelity", "--json", str(js), "--quiet"]) == 0
    r = json.loads(js.read_text())
    s = r["samples"]
    assert s["shots"] == 5 and s["tasks"] == 2 and s["validity"] == 1.0
    assert s["fidelity_chance"] == 0.5 and s["fidelity_real"] > 0.5 and 0 <= s["fidelity_same_script"] <= 1
    assert set(s["per_task"]) == set(s["scripts"]) and "fidelity_real" in next(iter(s["per_task"].values()))
    # Fine-tuning moves only the mixing weights: one small Adam step changes the NLL a little.
    assert abs(r["steps"]["1"]["5"]["nll_nats"] - r["steps"]["0"]["5"]["nll_nats"]) < 0.05 * r["steps"]["0"]["5"]["nll_nats"]
    assert r["shots"]["5"]["bits_per_char"] < r["unconditional"]["bits_per_char"]


def test_eval_image_metrics_on_text_are_refused(ngram_run, capsys):
    assert main(["eval", str(ngram_run), "--metrics", "nll,fid", "--quiet"]) == 2
    assert main(["eval", str(ngram_run), "--metrics", "fidelity", "--samples", "0", "--quiet"]) == 2
    assert "for text only fidelity" in capsys.readouterr().err
