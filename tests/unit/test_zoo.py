"""The zoo: packaged models load (hash-checked) and sample; names resolve wherever a checkpoint
folder does; export stores float16; a zoo model re-trains bit for bit from its stored config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import cli_in_process, make_image_folder

from fewgen import zoo
from fewgen.checkpoint import load, sha256_of
from fewgen.zoo.build import build, export, stored_dtype

TINY = ["--set", "data.image_size=8", "--set", "model.hidden=4", "--set", "model.latent=4", "--set",
        "model.context=8", "--set", "model.extra.features=16", "--set", "train.meta_batch=4", "--quiet"]


@pytest.mark.parametrize("name", zoo.names())
def test_every_packaged_model_loads_checked_and_samples(name):
    from fewgen.adaptation import adapter_for_checkpoint, empty_examples
    from fewgen.sample import sample_images, sample_text

    ck = load(name)  # the hash of model.safetensors is checked against config.json
    assert "fewgen zoo build" in zoo.card(name) and "licen" in zoo.card(name).lower()
    support = empty_examples(ck.model, 1)[None]
    a = adapter_for_checkpoint(ck)(support, torch.ones(1, 1, dtype=torch.bool), 0)
    if ck.model.modality == "image":
        assert sample_images(a, 1, seed=0, ecfg=ck.config.eval).shape[:2] == (1, 1)
    else:
        assert len(sample_text(a, 1, 0)[0]) == 1


def test_the_packaged_zoo_fits_in_25_megabytes():
    assert sum(e.megabytes for e in zoo.entries()) <= 25


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    """A zoo root holding one tiny model trained for 3 fixed steps (its config stores them)."""
    root = tmp_path_factory.mktemp("zoo")
    data = make_image_folder(root.parent / "zoo_data", tasks=6, per_task=6, size=8)
    run = root.parent / "zoo_run"
    torch.set_num_threads(1)
    from fewgen.cli import main

    assert main(["train", "--data", f"folder:{data}", "--out", str(run), *TINY, "--steps", "3"]) == 0
    export(run, root / "tiny-vae")
    (root / "tiny-vae" / zoo.CARD).write_text("# tiny-vae\n\nA tiny test model.\n\n`fewgen zoo build tiny-vae`\n")
    return root


def test_export_stores_float16_that_loads_as_float32(tiny_zoo):
    folder = tiny_zoo / "tiny-vae"
    assert stored_dtype(folder) == torch.float16
    run = load(tiny_zoo.parent / "zoo_run")
    packed = load(folder)
    for k, v in run.model.state_dict().items():
        w = packed.model.state_dict()[k]
        assert w.dtype == v.dtype and torch.equal(w, v.half().to(v.dtype) if v.is_floating_point() else v), k
    assert set(packed.info) <= {"algo", "data", "step", "best_val", "splits"}


def test_a_name_resolves_and_an_existing_path_wins(tiny_zoo, tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "ZOO_DIR", tiny_zoo)
    assert zoo.resolve("tiny-vae") == tiny_zoo / "tiny-vae" and load("tiny-vae").model.family == "image_vae"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-vae").mkdir()
    assert zoo.resolve("tiny-vae") == Path("tiny-vae")  # a folder of that name here is what the user means


def test_zoo_list_and_show(tiny_zoo, monkeypatch, capsys):
    monkeypatch.setattr(zoo, "ZOO_DIR", tiny_zoo)
    r = cli_in_process(["zoo", "list"], capsys, monkeypatch)
    assert r.returncode == 0 and "tiny-vae" in r.stdout and "A tiny test model" in r.stdout
    r = cli_in_process(["zoo", "show", "tiny-vae"], capsys, monkeypatch)
    assert r.returncode == 0 and r.stdout.startswith("# tiny-vae")
    r = cli_in_process(["zoo", "show", "nope"], capsys, monkeypatch)
    assert r.returncode == 2 and r.stderr.strip() == "fewgen: error: 'nope' is not a zoo model; the zoo has: tiny-vae"


def test_build_retrains_bit_for_bit(tiny_zoo, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(zoo, "ZOO_DIR", tiny_zoo)
    r = cli_in_process(["zoo", "build", "tiny-vae", "--out", str(tmp_path / "b"), "--quiet"], capsys, monkeypatch)
    assert r.returncode == 0 and "bit for bit the packaged weights" in r.stdout, r.stderr
    assert sha256_of(tmp_path / "b" / "model.safetensors") == sha256_of(tiny_zoo / "tiny-vae" / "model.safetensors")
    folder, same = build("tiny-vae", tmp_path / "b", resume=True, progress=False)  # a finished run resumes to itself
    assert same and (folder / zoo.CARD).is_file()


def test_the_wheel_carries_the_zoo(tmp_path):
    """``pip wheel .`` packs every zoo model's checkpoint and card (built from a copy of the
    sources, offline: no dependencies, no build isolation)."""
    import shutil
    import subprocess
    import sys
    import zipfile

    repo = Path(__file__).resolve().parents[2]
    copy = tmp_path / "repo"
    shutil.copytree(repo / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(repo / f, copy / f)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(copy), "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path / "wheel")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    packed = set(zipfile.ZipFile(next((tmp_path / "wheel").glob("*.whl"))).namelist())
    assert {"fewgen/zoo/__init__.py", "fewgen/zoo/build.py", "fewgen/zoo/tour.py"} <= packed
    for name in zoo.names():
        assert {f"fewgen/zoo/{name}/{f}" for f in ("config.json", "model.safetensors", zoo.CARD)} <= packed, name


def test_the_tour_shows_every_zoo_model_whose_data_is_here(tmp_path):
    """fewgen demo's first minute: a picture (or text file) per zoo model, of held-out tasks."""
    from PIL import Image

    from fewgen.zoo.tour import tour

    shown = {r.name: r for r in tour(tmp_path)}
    assert "glyphs-diffusion" in shown  # its data, the fonts inside matplotlib, are always here
    r = shown["glyphs-diffusion"]
    assert len(r.tasks) == 6 and Image.open(r.path).size[0] > 500
    from fewgen.checkpoint import load
    from fewgen.tasks.spec import load_tasks, splits_of

    ck = load("glyphs-diffusion")
    test = splits_of(load_tasks("glyphs", ck.config.data), ck.config.data)["test"]
    assert set(r.tasks) <= set(test.names)  # held-out characters only
