"""Papercuts a newcomer meets in the first ten minutes (issue 17), through the command line."""

from __future__ import annotations

import math
import re

import pytest

from fewgen.cli import main


def test_data_list_is_uniform_with_one_example_per_source(capsys):
    from fewgen.tasks.mix import parse_mixture
    from fewgen.tasks.spec import SOURCES, parse_spec

    assert main(["data", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(SOURCES) + 1  # every source, then the mixture syntax
    starts = [line.split()[0].split(":")[0] for line in lines]
    assert starts[:-1] == sorted(SOURCES) and starts[-1] == "SPEC+SPEC"  # every line starts with its spec name
    for line in lines:
        syntax, example = re.fullmatch(r"  (\S.*?)  +\S.*?  +e\.g\. (\S+)", line).groups()
        name = syntax.split()[0].split(":")[0]
        for src, _ in parse_mixture(example):  # the example is a valid spec of this source
            assert parse_spec(src)[0] == name or name == "SPEC+SPEC"
    assert len({line.index("e.g.") for line in lines}) == 1  # aligned columns


@pytest.mark.parametrize("command", [
    ["train", "--data", "toy", "--steps", "1", "--quiet"],
    ["adapt", "CKPT", "--support", "x.png"],
    ["bench", "--data", "toy", "--quiet"],
    ["demo", "--seconds", "1", "--quiet"],
])
@pytest.mark.parametrize("where", ["afile", "afile/run"])
def test_out_that_is_a_file_says_out_must_be_a_folder(tmp_path, capsys, command, where):
    (tmp_path / "afile").write_text("not a folder")
    out = str(tmp_path / where)
    assert main([*command, "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fewgen: error: --out {out} ") and len(err.splitlines()) == 1
    assert err.endswith("--out must be a folder (a new or empty one)")
    assert not (tmp_path / "afile").is_dir() and (tmp_path / "afile").read_text() == "not a folder"


@pytest.mark.parametrize("command", [["sample", "CKPT"], ["data", "show", "glyphs"], ["eval", "CKPT"], ["plot", "RUN"]])
def test_file_output_that_is_a_folder_says_so(tmp_path, capsys, command):
    flag = "--json" if command[0] == "eval" else "--out"
    assert main([*command, flag, str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fewgen: error: {flag} {tmp_path} is a folder; {flag} must be a file name, e.g. {tmp_path}/")


@pytest.fixture()
def small_checkpoint(tmp_path):
    """An (untrained) image checkpoint for 8x8 images and a folder of 3 tasks with 4, 6 and 8 images."""
    from conftest import make_image_folder
    from fewgen import checkpoint as ckpt
    from fewgen.config import Config, replace
    from fewgen.models.image_vae import ImageVAE

    root = tmp_path / "mine"
    root.mkdir()
    for t, n in enumerate((4, 6, 8)):
        make_image_folder(tmp_path / f"part{t}", tasks=1, per_task=n, size=8, seed=t)
        (tmp_path / f"part{t}" / "task00").rename(root / f"class{t}")
    cfg = replace(Config(), data={"spec": f"folder:{root}", "image_size": 8})
    model = ImageVAE(image_size=8, channels=1, hidden=4, latent=4, context=8, features=16)
    return ckpt.save(tmp_path / "ck", model, cfg), root


def test_eval_checks_every_k_before_any_work(small_checkpoint, capsys, monkeypatch):
    import fewgen.evaluate

    ck, root = small_checkpoint
    monkeypatch.setattr(fewgen.evaluate, "conditional_nll", lambda *a, **k: pytest.fail("evaluated before checking K"))
    assert main(["eval", str(ck), "--split", "all", "--shots", "1,50,8,7", "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"fewgen: error: folder:{root}: cannot evaluate K=8, K=50: no task has more than 8 examples ('class2' has "
        "the most) and K shots need K + 1; use --shots up to 7"]


def test_eval_warns_which_tasks_a_k_leaves_out(small_checkpoint, tmp_path):
    import json

    ck, root = small_checkpoint
    js = tmp_path / "e.json"
    with pytest.warns(UserWarning) as caught:
        assert main(["eval", str(ck), "--split", "all", "--shots", "1,5,6", "--importance-samples", "2", "--quiet",
                     "--json", str(js)]) == 0
    assert [str(w.message) for w in caught] == [
        "K=5 leaves out 1 of 3 tasks with 5 or fewer examples ('class0')",
        "K=6 leaves out 2 of 3 tasks with 6 or fewer examples ('class0', 'class1')"]
    r = json.loads(js.read_text())
    assert [r["shots"][k]["tasks"] for k in ("1", "5", "6")] == [3, 2, 1]


def test_bench_checks_every_k_before_training(small_checkpoint, capsys, tmp_path):
    _, root = small_checkpoint
    out = tmp_path / "bench"
    assert main(["bench", "--data", f"folder:{root}", "--eval-data", f"folder:{root}", "--methods", "amortized",
                 "--shots", "1,9", "--out", str(out), "--set", "data.image_size=8", "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"fewgen: error: folder:{root}: cannot evaluate K=9: no task has more than 8 examples ('class2' has "
        "the most) and K shots need K + 1; use --shots up to 7"]
    assert not (out / "ckpt").exists()  # nothing was trained


TINY_TRAIN = ["--set", "data.image_size=8", "--set", "model.hidden=4", "--set", "model.latent=4",
              "--set", "model.context=8", "--set", "model.extra.features=16", "--set", "train.meta_batch=4",
              "--set", "train.val_every=2", "--set", "train.log_every=1", "--steps", "2", "--quiet"]


@pytest.mark.parametrize("algo", ["amortized", "maml"])
def test_a_small_folder_of_my_own_classes_trains_by_default(tmp_path, capsys, algo):
    """6 images per class, --shots 1 and the default train.queries (10): each task gets 5 queries."""
    import json

    from conftest import make_image_folder

    mine = make_image_folder(tmp_path / "mine", tasks=5, per_task=6, size=8)
    out = tmp_path / "run"
    assert main(["train", "--data", f"folder:{mine}", "--shots", "1", "--algo", algo, "--out", str(out),
                 *TINY_TRAIN]) == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_loss" in r] == [2]  # meta-validation ran on a 6-image task
    assert all(math.isfinite(r.get("loss", r.get("val_loss"))) for r in records)
    assert (out / "model.safetensors").exists()


def test_too_few_examples_names_the_set_value_that_works(tmp_path, capsys):
    from conftest import make_image_folder

    mine = make_image_folder(tmp_path / "mine", tasks=4, per_task=6, size=8)
    out = str(tmp_path / "run")
    assert main(["train", "--data", f"folder:{mine}", "--shots", "6", "--out", out, *TINY_TRAIN]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"fewgen: error: folder:{mine}: no meta-train task has 7 examples (shots 6 + 1 query; the most "
                   "is 6); train.shots=5 would work (--shots 5, or --set train.shots=5)"]
    assert main(["train", "--data", f"folder:{mine}", "--set", "train.shots=5", "--out", out, *TINY_TRAIN]) == 0
