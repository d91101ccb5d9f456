"""Statistical: the diffusion model's own samples follow the support on held-out tasks."""

import pytest
import torch

from fewgen.adaptation import adapt
from fewgen.checkpoint import load
from fewgen.config import Config, replace
from fewgen.metrics.quality import fidelity
from fewgen.sample import sample_images
from fewgen.tasks.spec import load_tasks
from fewgen.training import train


@pytest.mark.slow
def test_conditional_samples_beat_unconditional_ones_on_fidelity(tmp_path):
    from conftest import make_image_folder

    # A toy image family: every task is its own random block pattern (plus pixel noise).
    root = make_image_folder(tmp_path / "toy", tasks=40, per_task=8, size=16)
    cfg = replace(Config(), data={"spec": f"folder:{root}", "image_size": 16, "augment": False},
                  model={"family": "image_diffusion", "hidden": 16, "context": 32},
                  train={"steps": 300, "meta_batch": 8, "shots": 3, "min_shots": 1, "queries": 4, "val_every": 300,
                         "val_tasks": 8, "lr": 2e-3})
    tasks = load_tasks(cfg.data.spec, cfg.data)
    train(cfg, tmp_path / "run", progress=False, tasks=tasks)
    model = load(tmp_path / "run").model
    test = tasks.split(cfg.data.split_fractions, cfg.data.split_seed)["test"]
    x = torch.stack([test.examples(i)[:6] for i in range(len(test))])  # (T, 6, 1, 16, 16)
    support, real = x[:, :3], x[:, 3:]
    a = adapt(model, support)
    ecfg = replace(cfg, eval={"sample_steps": 10}).eval
    cond = sample_images(a, 8, seed=0, ecfg=ecfg)
    uncond = sample_images(a, 8, seed=0, ecfg=replace(cfg, eval={"sample_steps": 10, "guidance": 0.0}).eval)
    # Nearest-prototype fidelity in pixel space (the patterns are far apart there).
    fid_cond, fid_uncond = (fidelity(s.flatten(2), support.flatten(2)).mean() for s in (cond, uncond))
    fid_real = fidelity(real.flatten(2), support.flatten(2)).mean()
    assert len(test) >= 6 and fid_real > 0.9
    assert fid_cond > fid_uncond + 0.3 and fid_cond > 0.6, (fid_cond, fid_uncond)
