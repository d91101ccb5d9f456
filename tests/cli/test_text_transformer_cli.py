"""The in-context byte Transformer through the real command line, on a tiny model: words and
long text lines, every-K training, fine-tuning at test time, bad support files."""

import json

import pytest

from fewgen.cli import main
from fewgen.metrics.text import is_valid

TINY = ["--set", "model.family=text_transformer", "--set", "model.hidden=16",
        "--set", "model.extra={layers=1, heads=2, window=400, train_window=160}",
        "--set", "train.meta_batch=4", "--set", "train.val_every=4", "--set", "train.val_tasks=4",
        "--set", "train.log_every=2", "--set", "data.max_examples_per_task=60", "--quiet"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tt") / "run"
    assert main(["train", "--data", "words:en,fr,de,es,it,pt", "--out", str(out), "--steps", "4", "--shots", "0",
                 "--set", "train.queries=12", *TINY]) == 0
    return out


def test_train_picks_the_transformer_and_trains_every_k(run):
    cfg = json.loads((run / "resolved_config.json").read_text())
    assert cfg["model"]["family"] == "text_transformer" and cfg["train"]["shots"] == 0
    logs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs if "val_loss" in r] == [4]


def test_sample_truncates_a_long_support_line_with_one_warning(run, tmp_path):
    sup = tmp_path / "support.txt"
    sup.write_text("hello\n\n" + "ĉ" * 30 + "\n" + "x" * 40 + "\nmonde\n", encoding="utf-8")
    out = tmp_path / "samples.txt"
    with pytest.warns(UserWarning) as caught:
        assert main(["sample", str(run), "--support", str(sup), "--n", "6", "--out", str(out)]) == 0
    assert len(caught) == 1
    assert f"{sup}:3 is longer than the model's 23 bytes; truncated (and 1 more" in str(caught[0].message)
    lines = out.read_bytes().decode("utf-8").splitlines()
    assert len(lines) == 6 and all(is_valid(s) for s in lines)


def test_a_support_larger_than_the_window_is_refused(run, tmp_path, capsys):
    sup = tmp_path / "big.txt"
    sup.write_text("\n".join(["abcdefghijklmnop"] * 30) + "\n", encoding="utf-8")
    assert main(["sample", str(run), "--support", str(sup), "--n", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fewgen: error:") and "at most 376" in err[0]


def test_adapt_stores_the_prefix_and_the_adapted_checkpoint_samples_without_support(run, tmp_path):
    sup = tmp_path / "support.txt"
    sup.write_text("maison\nchemin\nsoleil\n", encoding="utf-8")
    for steps in ("0", "1"):
        adapted = tmp_path / f"adapted{steps}"
        assert main(["adapt", str(run), "--support", str(sup), "--steps", steps, "--out", str(adapted)]) == 0
        out = tmp_path / f"s{steps}.txt"
        assert main(["sample", str(adapted), "--n", "4", "--out", str(out)]) == 0
        lines = out.read_bytes().decode("utf-8").splitlines()
        assert len(lines) == 4 and all(is_valid(s) for s in lines)


def test_eval_with_and_without_fine_tuning(run, tmp_path):
    js = tmp_path / "eval.json"
    assert main(["eval", str(run), "--split", "all", "--shots", "1,5", "--steps", "0,1", "--max-tasks", "2",
                 "--max-examples", "20", "--samples", "3", "--json", str(js), "--quiet"]) == 0
    r = json.loads(js.read_text())
    for e in [r["unconditional"], *r["shots"].values(), *r["steps"]["1"].values()]:
        assert 0 < e["bits_per_char"] < 20
    assert r["samples"]["validity"] == 1.0


def test_text_lines_of_128_bytes(tmp_path):
    root = tmp_path / "lines"
    root.mkdir()
    for t in range(4):
        body = "".join(f"task {t} line {i:02d} " + "é" * 56 + "z" * (i % 7) + "\n" for i in range(20))
        (root / f"t{t}.txt").write_text(body, encoding="utf-8")  # lines of 127 to 133 bytes
    out = tmp_path / "run"
    long = [a.replace("window=400, train_window=160", "window=1024, train_window=512") for a in TINY]
    assert main(["train", "--data", f"text:{root}", "--out", str(out), "--steps", "2", "--shots", "0",
                 "--set", "train.queries=4", "--set", "data.split_fractions=[0.5,0.25,0.25]", *long]) == 0
    assert json.loads((out / "config.json").read_text())["model"]["kwargs"]["max_len"] == 134
    sup = tmp_path / "support.txt"
    sup.write_text("".join((root / "t0.txt").read_text(encoding="utf-8").splitlines(True)[:3]), encoding="utf-8")
    samples = tmp_path / "s.txt"
    assert main(["sample", str(out), "--support", str(sup), "--n", "3", "--out", str(samples)]) == 0
    lines = samples.read_bytes().decode("utf-8").splitlines()
    assert len(lines) == 3 and all(is_valid(s) for s in lines)
