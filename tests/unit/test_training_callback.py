"""``train(..., callback=)``: called after every step, leaves the run unchanged, pauses its clock, can stop it."""

from __future__ import annotations

import json
import time

import pytest
import torch

from conftest import make_image_folder
from fewgen.adaptation import adapt, adapted_nll
from fewgen.checkpoint import load_train_state
from fewgen.config import Config, apply_overrides
from fewgen.training import Run, train

SETTINGS = ["data.image_size=8", "model.hidden=4", "model.latent=4", "model.context=8", "model.extra.features=16",
            "train.steps=6", "train.meta_batch=4", "train.shots=2", "train.queries=3", "train.val_every=3",
            "train.val_tasks=2", "train.log_every=1", "train.ckpt_every=100"]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> Config:
    data = make_image_folder(tmp_path_factory.mktemp("cb") / "imgs", tasks=8, per_task=6, size=8)
    return apply_overrides(Config(), [f"data.spec=folder:{data}", *SETTINGS])


@pytest.fixture(scope="module")
def reference(cfg, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ref")
    train(cfg, out, progress=False)
    return load_train_state(out)


def test_callback_sees_every_step_and_leaves_the_run_unchanged(cfg, reference, tmp_path, one_thread):
    seen = []

    def evaluate(run: Run) -> None:  # what a benchmark does: score the live model, in eval mode
        seen.append(run.state.step)
        run.model.eval()
        x = (torch.rand(1, 5, 1, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.5).float()
        adapted_nll(adapt(run.model, x[:, :2]), x[:, 2:], 4, 4, torch.Generator().manual_seed(1))

    res = train(cfg, tmp_path, progress=False, callback=evaluate)
    assert seen == [1, 2, 3, 4, 5, 6] and res.steps == 6
    state = load_train_state(tmp_path)
    for k, v in reference["model"].items():
        assert torch.equal(v, state["model"][k]), k


def test_callback_time_is_not_training_time(cfg, tmp_path, one_thread):
    def slow(run: Run) -> None:
        time.sleep(0.5)

    res = train(cfg, tmp_path, progress=False, callback=slow)
    assert res.seconds < 6 * 0.5  # six pauses of 0.5 s are not in the clock
    times = [r["time"] for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines()) if "time" in r]
    assert len(times) == 6 and times[-1] < 6 * 0.5


def test_a_true_callback_stops_the_run_with_a_resumable_state(cfg, reference, tmp_path, one_thread):
    res = train(cfg, tmp_path, progress=False, callback=lambda run: run.state.step >= 2)
    assert res.steps == 2 and not res.interrupted
    assert load_train_state(tmp_path)["step"] == 2
    assert (tmp_path / "model.safetensors").exists()
    train(cfg, tmp_path, resume=True, progress=False)  # and it continues exactly
    state = load_train_state(tmp_path)
    for k, v in reference["model"].items():
        assert torch.equal(v, state["model"][k]), k
