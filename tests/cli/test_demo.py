"""fewgen demo end to end on a tiny budget (the real one trains for 3 minutes)."""

import json

from PIL import Image

import fewgen.demo as demo
from fewgen.config import replace


def test_demo_writes_grids_and_metrics(tmp_path, monkeypatch):
    real = demo.demo_config

    def tiny(seconds, seed=0):
        cfg = real(seconds, seed)
        return replace(cfg, data={"cache_dir": str(tmp_path / "cache")},
                       model={"hidden": 8, "latent": 4, "context": 16, "extra": {"features": 32}},
                       train={"steps": 6, "meta_batch": 4, "val_every": 3, "val_tasks": 4},
                       eval={"max_tasks": 3, "importance_samples": 3})

    monkeypatch.setattr(demo, "demo_config", tiny)
    import fewgen.zoo

    (tmp_path / "no_zoo").mkdir()
    monkeypatch.setattr(fewgen.zoo, "ZOO_DIR", tmp_path / "no_zoo")  # the tour has its own test (test_zoo)
    monkeypatch.setattr("fewgen.tasks.images.GLYPH_FONTS", ["DejaVuSans.ttf", "DejaVuSerif.ttf",
                                                            "DejaVuSansMono.ttf", "STIXGeneral.ttf"])
    r = demo.run_demo(tmp_path / "demo", train_seconds=30, progress=False, num_characters=2)
    m = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert m["train_steps"] == 6 and set(m["eval"]["shots"]) == {"1", "5"}
    assert len(m["sample_grids"]) == 2 and len(m["held_out_characters"]) == 2
    for f in [r["overview"], *r["sample_grids"]]:
        assert Image.open(f).width > 100
    assert (tmp_path / "demo" / "model" / "model.safetensors").exists() and m["zoo"] == {}
