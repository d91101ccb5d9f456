"""The imports the package docstring and the README document work, and name functions."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_documented_imports_are_the_functions():
    from fewgen import Config, adapt, adapt_checkpoint, load, load_tasks, sample_images, sample_text, train
    import fewgen.adaptation
    import fewgen.sample

    assert adapt is fewgen.adaptation.adapt and adapt_checkpoint is fewgen.adaptation.adapt_checkpoint
    assert sample_images is fewgen.sample.sample_images and sample_text is fewgen.sample.sample_text
    assert all(callable(f) for f in (Config, load, load_tasks, train))


def test_unknown_name_is_an_attribute_error():
    import fewgen

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fewgen.nope  # noqa: B018


def test_import_fewgen_does_not_import_torch():
    code = "import sys, fewgen; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_readme_library_example_runs(tmp_path):
    import torch

    from fewgen import Config, adapt, load, sample_images, train
    from fewgen.config import replace

    cfg = replace(Config(), data={"spec": "toy"}, model={"hidden": 8, "context": 4},
                  train={"steps": 3, "meta_batch": 2, "val_every": 3, "val_tasks": 2, "log_every": 1, "device": "cpu"})
    train(cfg, tmp_path / "run", progress=False)
    ck = load(tmp_path / "run")
    support = torch.randn(1, 3, ck.model.dim)
    assert adapt(ck.model, support).num_tasks == 1
    assert callable(sample_images)
