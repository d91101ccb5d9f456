"""A user's folder of colour images (``folder:PATH``): read in colour, trained on, sampled in colour."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fewgen.config import DataConfig
from fewgen.tasks.spec import load_tasks
from fewgen.tasks.images import folder_channels, read_image

from conftest import cli_in_process, make_image_folder

COLOURS = [(220, 30, 30), (30, 160, 40), (40, 60, 210)]


def make_colour_folder(root: Path, per_task: int = 6) -> Path:
    """Three tasks, each a disc of its own colour on white, at sizes that differ from file to
    file; every other file is RGBA with a transparent background."""
    rng = np.random.default_rng(0)
    for t, colour in enumerate(COLOURS):
        d = root / f"colour{t}"
        d.mkdir(parents=True)
        for i in range(per_task):
            w, h = int(rng.integers(20, 70)), int(rng.integers(20, 70))
            yy, xx = np.mgrid[:h, :w]
            disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(w, h) / 3) ** 2
            if i % 2:
                a = np.zeros((h, w, 4), np.uint8)
                a[disc] = (*colour, 255)
                Image.fromarray(a, "RGBA").save(d / f"{i}.png")
            else:
                a = np.full((h, w, 3), 255, np.uint8)
                a[disc] = colour
                Image.fromarray(a, "RGB").save(d / f"{i}.jpg" if i == 2 else d / f"{i}.png")
    return root


def test_a_colour_folder_is_read_in_colour(tmp_path):
    ts = load_tasks(f"folder:{make_colour_folder(tmp_path / 'c')}", DataConfig(image_size=16))
    assert ts.example_shape == (3, 16, 16)
    for t, colour in enumerate(COLOURS):
        x = ts.examples(t)  # (n, 3, 16, 16), ink = 1 - RGB
        centre = x[:, :, 8, 8].mean(0).numpy()
        assert np.allclose(centre, 1 - np.array(colour) / 255, atol=0.08), (t, centre)
        assert float(x[:, :, 0, 0].abs().max()) < 0.02  # white paper (transparent too) is no ink


def test_grey_folders_stay_grey_and_one_colour_file_makes_colour(tmp_path):
    grey = make_image_folder(tmp_path / "g", tasks=2, per_task=4)  # grey drawings saved as L, RGB, RGBA, P
    assert load_tasks(f"folder:{grey}", DataConfig(image_size=8)).example_shape == (1, 8, 8)
    files = sorted(grey.rglob("*.png"))
    assert folder_channels(files) == 1
    a = np.full((10, 10, 3), 255, np.uint8)
    a[3:7, 3:7] = (0, 0, 255)
    Image.fromarray(a).save(grey / "task00" / "blue.png")
    assert load_tasks(f"folder:{grey}", DataConfig(image_size=8)).example_shape == (3, 8, 8)


def test_colour_read_keeps_grey_images_grey_in_three_channels(tmp_path):
    Image.fromarray(np.full((9, 9), 64, np.uint8), "L").save(tmp_path / "g.png")
    x = read_image(tmp_path / "g.png", 4, True, "g.png", channels=3)
    assert x.shape == (3, 4, 4) and np.allclose(x, 1 - 64 / 255, atol=1e-6)  # never binarised


@pytest.mark.parametrize("family", ["image_diffusion", "image_vae"])
def test_train_and_sample_a_colour_folder(tmp_path, capsys, monkeypatch, family):
    root = make_colour_folder(tmp_path / "mine")
    run, grid = tmp_path / "run", tmp_path / "grid.png"
    r = cli_in_process(["train", "--data", f"folder:{root}", "--out", str(run), "--steps", "2", "--quiet",
                        "--set", f"model.family={family}", "--set", "data.image_size=16", "--set", "model.hidden=8",
                        ], capsys, monkeypatch)
    assert r.returncode == 0, r.stderr
    r = cli_in_process(["sample", str(run), "--support", str(root / "colour0" / "0.png"), "--n", "4",
                        "--out", str(grid), "--seed", "0"], capsys, monkeypatch)
    assert r.returncode == 0, r.stderr
    pic = np.asarray(Image.open(grid).convert("RGB"), dtype=np.int16)
    support_cell = pic[2:50, 2:50]  # the support row's first picture (scale 3, pad 2)
    assert (support_cell.max(-1) - support_cell.min(-1)).max() > 100  # drawn in colour
