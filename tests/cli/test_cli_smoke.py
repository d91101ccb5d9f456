"""train -> sample -> eval through the real command line, on a tiny config."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from fewgen.cli import main

TINY = ["--set", "model.hidden=8", "--set", "model.latent=4", "--set", "model.context=16",
        "--set", "model.extra={features=32}", "--set", "train.meta_batch=4", "--set", "train.val_every=10",
        "--set", "train.val_tasks=8", "--set", "train.log_every=5", "--quiet"]


def test_train_sample_eval(omniglot_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", f"omniglot:{omniglot_dir}", "--out", str(out), "--steps", "20", *TINY]) == 0
    for f in ("config.json", "model.safetensors", "train_state.pt", "metrics.jsonl", "resolved_config.json"):
        assert (out / f).exists(), f
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("val_loss" in r for r in lines) and any("steps_per_s" in r for r in lines)

    # The support: 3 real drawings of a held-out character, written as PNG files.
    from fewgen.tasks.spec import load_split
    from fewgen.config import DataConfig

    test = load_split(f"omniglot:{omniglot_dir}", DataConfig(), "test")
    sup = tmp_path / "support"
    sup.mkdir()
    for i, x in enumerate(test.examples(0)[:3]):
        Image.fromarray(((1 - x[0].numpy()) * 255).astype("uint8")).save(sup / f"{i}.png")
    grid = tmp_path / "grid.png"
    assert main(["sample", str(out), "--support", str(sup), "--n", "16", "--out", str(grid), "--seed", "1"]) == 0
    img = Image.open(grid)
    assert img.width > 16 * 28 and img.height > 2 * 28

    js = tmp_path / "eval.json"
    assert main(["eval", str(out), "--data", f"omniglot:{omniglot_dir}", "--split", "test", "--shots", "1,5",
                 "--importance-samples", "10", "--max-tasks", "6", "--json", str(js), "--quiet"]) == 0
    r = json.loads(js.read_text())
    assert r["data"] == f"omniglot:{omniglot_dir}" and r["split"] == "test"
    assert set(r["unconditional"]) >= {"nll_nats", "ci95"}
    assert set(r["shots"]) == {"1", "5"}
    for k in ("1", "5"):
        assert set(r["shots"][k]) >= {"nll_nats", "ci95", "tasks", "queries"} and r["shots"][k]["tasks"] == 6
        assert r["shots"][k]["nll_nats"] > 0


def test_folder_with_two_examples_per_task_evaluates_both_ways(tmp_path):
    from conftest import make_image_folder
    from fewgen.evaluate import eval_episodes
    from fewgen.tasks.spec import load_tasks

    root = make_image_folder(tmp_path / "two", tasks=3, per_task=2)
    ts = load_tasks(f"folder:{root}")
    eps = eval_episodes(ts, shots=1, max_queries=15, seed=0)
    assert len(eps) == 1 and len(eps[0].task) == 6  # 3 tasks x 2 directions
    for t in range(3):
        sel = eps[0].task == t
        s, q = eps[0].support[sel][:, 0], eps[0].query[sel][:, 0]
        assert torch_equal(s[0], q[1]) and torch_equal(s[1], q[0])


def torch_equal(a, b):
    import torch

    return torch.equal(a, b)


def test_bad_input_is_one_line_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "fewgen", "train", "--data", "nonsense", "--out", str(tmp_path / "x")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["fewgen: error: unknown data spec 'nonsense'; valid sources: "
                                             + r.stderr.split("valid sources: ")[1].strip()]
    assert "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "fewgen", "eval", str(tmp_path / "missing")], capture_output=True, text=True)
    assert r.returncode == 2 and "no such checkpoint folder" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("cmd", ["train", "sample", "eval", "data", "demo"])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0 and "usage: fewgen" in capsys.readouterr().out
