"""Statistical: conditioning on the support really helps on held-out alphabets."""

import pytest
import torch

from fewgen.config import Config, replace
from fewgen.adaptation import adapter_for_checkpoint
from fewgen.evaluate import evaluate
from fewgen.checkpoint import load
from fewgen.training import train


@pytest.mark.slow
def test_five_shot_nll_is_below_unconditional_on_held_out_alphabets(omniglot_dir, omniglot_tasks, tmp_path):
    cfg = replace(Config(), data={"spec": f"omniglot:{omniglot_dir}"},
                  model={"hidden": 16, "latent": 16, "context": 64, "extra": {"features": 128}},
                  train={"steps": 250, "meta_batch": 8, "val_every": 125, "val_tasks": 16, "lr": 2e-3},
                  eval={"shots": (5,), "importance_samples": 20, "max_tasks": 20})
    train(cfg, tmp_path / "run", progress=False, tasks=omniglot_tasks)
    ck = load(tmp_path / "run")
    test = omniglot_tasks.split(cfg.data.split_fractions, cfg.data.split_seed)["test"]
    r = evaluate(adapter_for_checkpoint(ck), test, cfg.eval, progress=False)
    uncond, five = r["unconditional"]["per_task"], r["shots"]["5"]["per_task"]
    # Paired over the same held-out tasks: the gain must be clearly positive, not noise.
    gain = torch.tensor([uncond[t] - five[t] for t in five])
    assert len(gain) == 20
    lower = gain.mean() - 1.96 * gain.std() / len(gain) ** 0.5
    assert gain.mean() > 3.0 and lower > 0, (gain.mean(), lower)
