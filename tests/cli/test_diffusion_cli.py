"""The diffusion family through the real command line: train -> adapt -> sample -> eval (quality
metrics included) on folder data with only 2 examples per task, RGB, tiny config."""

import json

from PIL import Image

from fewgen.cli import main

TINY = ["--set", "model.family=image_diffusion", "--set", "model.hidden=8", "--set", "model.context=16",
        "--set", "data.image_size=16", "--set", "train.meta_batch=2", "--set", "train.shots=1",
        "--set", "train.queries=1", "--set", "train.val_every=2", "--set", "train.val_tasks=2", "--quiet"]


def test_diffusion_on_two_examples_per_task(tmp_path, capsys):
    from conftest import make_image_folder

    root = make_image_folder(tmp_path / "two", tasks=6, per_task=2, size=16)
    run = tmp_path / "run"
    assert main(["train", "--data", f"folder:{root}", "--out", str(run), "--steps", "2", *TINY]) == 0
    assert json.loads((run / "config.json").read_text())["config"]["train"]["ema"] == 0.999  # train.ema "auto"
    first = sorted((root / "task00").iterdir())[:1]
    grid = tmp_path / "grid.png"
    assert main(["sample", str(run), "--support", *map(str, first), "--n", "4", "--sample-steps", "2",
                 "--guidance", "1.5", "--out", str(grid)]) == 0
    assert Image.open(grid).size[0] > 16
    adapted = tmp_path / "adapted"
    assert main(["adapt", str(run), "--support", *map(str, first), "--out", str(adapted)]) == 0
    assert main(["sample", str(adapted), "--n", "3", "--sample-steps", "2", "--sampler", "ddpm",
                 "--out", str(tmp_path / "g2.png")]) == 0
    out = tmp_path / "eval" / "r.json"
    assert main(["eval", str(run), "--split", "all", "--shots", "1", "--importance-samples", "2",
                 "--metrics", "nll,fid,kid,fidelity,diversity,memorization,sensitivity", "--sample-steps", "2",
                 "--feature-steps", "3", "--json", str(out), "--quiet"]) == 0
    r = json.loads(out.read_text())
    q = r["quality"]["0"]
    assert q["shots"] == 1 and q["tasks"] == 6 and 0 <= q["fidelity"] <= 1 and q["memorization"] is not None
    assert q["fid"] is None and q["fid_pooled"] is not None  # one real example per task: pooled FID only
    assert q["sensitivity"] >= 0 and q["sensitivity_ci95"] is not None and "sensitivity_real" not in q
    assert q["sensitivity_seed"] > 0
    assert r["shots"]["1"]["nll_nats"] > 0


def test_bad_guidance_is_one_line_error(tmp_path, capsys):
    from conftest import make_image_folder

    root = make_image_folder(tmp_path / "two", tasks=4, per_task=2, size=16)
    run = tmp_path / "run"
    assert main(["train", "--data", f"folder:{root}", "--out", str(run), "--steps", "1", *TINY]) == 0
    first = sorted((root / "task00").iterdir())[:1]
    code = main(["sample", str(run), "--support", str(first[0]), "--guidance", "-2", "--out", str(tmp_path / "g.png")])
    assert code == 2 and "eval.guidance' must be at least 0" in capsys.readouterr().err
