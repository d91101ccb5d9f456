"""The TOML presets in configs/ load, and mean what the README's commands spell out with flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from fewgen.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))


def test_there_are_presets():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_preset_loads(path):
    cfg = load_config(path)
    assert cfg.data.spec and cfg.train.steps > 0


def test_the_words_preset_is_the_readme_words_run():
    cfg = load_config(Path(CONFIGS[0]).parent / "words_gru.toml")
    assert (cfg.data.spec, cfg.model.family, cfg.model.hidden, cfg.model.context) == ("words", "text_lm", 64, 64)
    assert (cfg.train.shots, cfg.train.min_shots, cfg.train.max_seconds, cfg.train.val_every) == (10, 0, 240, 500)


def test_the_omniglot_presets_are_the_readme_runs():
    vae = load_config(Path(CONFIGS[0]).parent / "omniglot_25min.toml")
    assert (vae.model.family, vae.model.extra, vae.train.max_seconds, vae.train.clock) == (
        "image_vae", {"attention": True, "heads": 1}, 1500, "cpu")
    diff = load_config(Path(CONFIGS[0]).parent / "omniglot_diffusion.toml")
    assert (diff.model.family, diff.model.extra, diff.train.ema, diff.train.lr, diff.train.meta_batch) == (
        "image_diffusion", {"p_uncond": 0.1}, 0.999, 2e-3, 8)
