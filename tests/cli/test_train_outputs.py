"""What ``fewgen train`` tells its user (issue 17): the device it chose, progress in a log file,
training curves (``fewgen plot``) and TensorBoard events."""

from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from fewgen.cli import main
from fewgen.config import Config

TINY = ["--data", "toy", "--set", "model.family=toy_gauss", "--set", "train.meta_batch=4", "--set", "train.shots=2",
        "--set", "train.queries=3", "--set", "train.val_every=4", "--set", "train.val_tasks=2",
        "--set", "train.log_every=2"]


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    fmt = warnings.formatwarning
    capsys.readouterr()
    try:
        code = main(args)
    finally:
        warnings.formatwarning = fmt  # main() replaces it
    out = capsys.readouterr()
    return code, out.out, out.err


def test_device_defaults_to_auto_and_the_choice_is_logged(tmp_path, capsys):
    assert Config().train.device == "auto"
    code, out, _ = cli(["train", "--out", str(tmp_path / "run"), "--steps", "2", *TINY], capsys)
    assert code == 0
    stored = json.loads((tmp_path / "run" / "resolved_config.json").read_text())
    assert stored["train"]["device"] == "auto"
    lines = [x for x in out.splitlines() if x.startswith("device: ")]
    expected = f"cuda:0 ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu (no CUDA GPU visible)"
    assert lines == [f"device: {expected}"], out
    code, out, _ = cli(["train", "--out", str(tmp_path / "cpu"), "--steps", "2", "--device", "cpu", *TINY], capsys)
    assert code == 0 and [x for x in out.splitlines() if x.startswith("device: ")] == ["device: cpu"]
    code, out, _ = cli(["train", "--out", str(tmp_path / "q"), "--steps", "2", "--quiet", *TINY], capsys)
    assert code == 0 and "device: " not in out  # --quiet: only the result line


@pytest.fixture(scope="module")
def text_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("texts")
    for t, stem in enumerate(["ka", "lo", "mi", "nu", "po", "ri"]):
        (root / f"{stem}.txt").write_text("\n".join(f"{stem}{'abc'[i % 3]}{i}" for i in range(8)) + "\n", encoding="utf-8")
    return root


def test_progress_in_a_log_file_is_plain_lines_with_bytes_per_second(text_folder, tmp_path, capsys):
    # capsys's stderr is no terminal, like a log file or a pipe
    code, _, err = cli(["train", "--data", f"text:{text_folder}", "--out", str(tmp_path / "run"), "--steps", "6",
                        "--set", "model.hidden=8", "--set", "train.meta_batch=2", "--set", "train.shots=2",
                        "--set", "train.queries=3", "--set", "train.val_every=3", "--set", "train.val_tasks=2",
                        "--set", "train.log_every=2"], capsys)
    assert code == 0, err
    assert "\r" not in err  # no tqdm redraws
    lines = err.splitlines()
    assert len(lines) == 1, err  # a 6-step run takes under PLAIN_EVERY seconds: the final line only
    assert re.fullmatch(r"train amortized: step 6/6 \(100%\), loss [\d.]+, best_val [\d.]+, [\d.]+ steps/s, "
                        r"[\d.]+[kM]?B/s, ETA 00:00", lines[0]), lines[0]



@pytest.mark.parametrize("clock, note", [("wall", "time budget"), ("cpu", r"time budget: 00:00 CPU left")])
def test_a_binding_time_budget_is_the_eta_in_the_log(clock, note, tmp_path, capsys):
    # 10^6 steps would take hours; the 1-second budget ends the run, and the last line's ETA is its own
    code, _, err = cli(["train", "--out", str(tmp_path / "run"), "--steps", "1000000", "--max-seconds", "1",
                        "--set", f"train.clock={clock}", *TINY], capsys)
    assert code == 0, err
    assert "\r" not in err
    assert re.fullmatch(rf"train amortized: step \d+/1000000 \(0%\), loss [\d.]+, best_val [\d.]+, [\d.]+ steps/s, "
                        rf"ETA 00:00 \({note}\)", err.splitlines()[-1]), err


def test_evaluation_in_a_log_file_is_plain_lines(tmp_path, capsys):
    run = toy_run(tmp_path / "run")
    code, out, err = cli(["eval", str(run), "--shots", "1,2", "--max-tasks", "4"], capsys)
    assert code == 0, err
    assert "\r" not in err
    lines = [x for x in err.splitlines() if x.startswith("eval ")]  # one line per K as each ends (under 30 s)
    assert [x.split(":")[0] for x in lines] == ["eval K=0 steps=0", "eval K=1 steps=0", "eval K=2 steps=0"], err
    assert all(re.fullmatch(r"eval K=\d steps=0: episode (\d+)/\1 \(100%\), [\d.]+ episodes/s, ETA 00:00", x)
               for x in lines), err

def toy_run(out: Path, *extra: str) -> Path:
    """A finished 12-step run."""
    fmt = warnings.formatwarning
    try:
        assert main(["train", "--out", str(out), "--steps", "12", "--quiet", *TINY, *extra]) == 0
    finally:
        warnings.formatwarning = fmt
    return out


def test_plot_writes_a_png_of_the_curves(tmp_path, capsys):
    from PIL import Image

    run = toy_run(tmp_path / "run")
    code, out, err = cli(["plot", str(run)], capsys)
    assert code == 0 and err == "" and out.strip() == f"training curves: {run / 'curves.png'}"
    picture = tmp_path / "sub" / "c.png"
    assert cli(["plot", str(run), "--out", str(picture)], capsys)[0] == 0
    for path in (run / "curves.png", picture):
        img = Image.open(path)
        assert img.format == "PNG" and img.width > 500 and len(np.unique(np.asarray(img.convert("L")))) > 8  # drawn
    with pytest.raises(SystemExit) as e:
        main(["plot", "--help"])
    assert e.value.code == 0 and "fewgen plot runs/omni" in capsys.readouterr().out
    code, _, err = cli(["plot", str(tmp_path / "none")], capsys)
    assert code == 2 and err.strip() == f"fewgen: error: {tmp_path / 'none'}: no metrics.jsonl (not a fewgen training run folder?)"


def test_tensorboard_events_hold_the_logged_metrics(tmp_path):
    # The package is the extra fewgen[tensorboard]; `make test` installs it.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = toy_run(tmp_path / "run", "--set", "train.tensorboard=true")
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    logged = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train = [(r["step"], r["loss"]) for r in logged if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in logged if "val_loss" in r]
    assert [(e.step, pytest.approx(e.value)) for e in acc.Scalars("loss/train")] == train
    assert [(e.step, pytest.approx(e.value)) for e in acc.Scalars("loss/val")] == val
    assert {"loss/best_val", "speed/steps_per_s", "speed/tasks_per_s"} <= set(acc.Tags()["scalars"])

    fmt = warnings.formatwarning
    try:  # resumed for 4 more steps: the curves go on, no step twice
        assert main(["train", "--out", str(run), "--resume", "--steps", "16", "--quiet"]) == 0
    finally:
        warnings.formatwarning = fmt
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss/train")] == [2, 4, 6, 8, 10, 12, 14, 16]


def test_tensorboard_without_the_package_is_one_line_saying_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    code, _, err = cli(["train", "--out", str(tmp_path / "run"), "--steps", "2", "--set", "train.tensorboard=true",
                        "--quiet", *TINY], capsys)
    assert code == 2 and err.splitlines() == [
        "fewgen: error: train.tensorboard needs the tensorboard package: pip install 'fewgen[tensorboard]'"]
    assert not (tmp_path / "run").exists()  # it failed before any work


def test_cpu_clock_budget_counts_process_time_not_wall_time(tmp_path, capsys, monkeypatch):
    import fewgen.training as training

    ticks = iter(range(10**6))
    monkeypatch.setattr(training.time, "process_time", lambda: float(next(ticks)))  # 1 CPU second per reading
    code, out, _ = cli(["train", "--out", str(tmp_path / "cpu"), "--steps", "500", "--max-seconds", "6",
                        "--set", "train.clock=cpu", *TINY], capsys)
    assert code == 0 and "time budget of 6s reached at step" in out
    step = int(re.search(r"reached at step (\d+)", out).group(1))
    assert 1 <= step < 10  # a few readings per step: far from the 500 steps that the wall clock allows
    code, out, _ = cli(["train", "--out", str(tmp_path / "wall"), "--steps", "12", "--max-seconds", "6", *TINY], capsys)
    assert code == 0 and "time budget" not in out  # the wall clock: 12 tiny steps take well under 6 s


def test_unknown_clock_is_a_one_line_error(tmp_path, capsys):
    code, _, err = cli(["train", "--out", str(tmp_path / "r"), "--steps", "2", "--set", "train.clock=gpu", *TINY], capsys)
    assert code == 2 and "config key 'train.clock' must be wall or cpu, got 'gpu'" in err and "Traceback" not in err


def test_ema_checkpoint_holds_the_weight_average_and_resume_is_exact(tmp_path, capsys):
    from fewgen.checkpoint import load

    args = ["--steps", "8", *TINY, "--set", "train.ema=0.9", "--set", "train.val_every=100",
            "--set", "train.ckpt_every=4"]  # validated (and saved) at the last step only
    assert cli(["train", "--out", str(tmp_path / "a"), *args], capsys)[0] == 0
    assert cli(["train", "--out", str(tmp_path / "raw"), *[a if a != "train.ema=0.9" else "train.ema=0" for a in args]],
               capsys)[0] == 0
    state = torch.load(tmp_path / "a" / "train_state.pt", weights_only=True)
    averaged = load(tmp_path / "a").model.state_dict()
    raw = load(tmp_path / "raw").model.state_dict()
    for k, v in averaged.items():  # the checkpoint is the average; the resume state keeps the raw weights too
        assert torch.equal(v, state["ema"][f"model.{k}"])
        assert torch.equal(state["model"][k], raw[k])  # the optimiser stepped the same raw weights
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged)
    half = ["--steps", "4", *args[2:]]
    assert cli(["train", "--out", str(tmp_path / "b"), *half], capsys)[0] == 0
    assert cli(["train", "--out", str(tmp_path / "b"), "--resume", "--steps", "8"], capsys)[0] == 0
    resumed = torch.load(tmp_path / "b" / "train_state.pt", weights_only=True)  # (its best checkpoint may be step 4's)
    assert all(torch.equal(resumed["ema"][k], state["ema"][k]) for k in state["ema"])
    assert all(torch.equal(resumed["model"][k], state["model"][k]) for k in state["model"])


def test_ema_out_of_range_is_a_one_line_error(tmp_path, capsys):
    code, _, err = cli(["train", "--out", str(tmp_path / "r"), "--steps", "2", "--set", "train.ema=1.5", *TINY], capsys)
    assert code == 2 and "config key 'train.ema' must be in [0, 1)" in err


def test_a_budget_without_a_step_count_trains_to_the_budget(tmp_path, capsys):
    """--max-seconds alone: the budget ends the run (not train.steps' default of 2,000), and the
    plain progress lines show no step total, and the budget's ETA; with --steps the count still decides."""
    from fewgen.training import OPEN_ENDED_STEPS

    code, out, err = cli(["train", "--out", str(tmp_path / "budget"), "--max-seconds", "1.5", *TINY], capsys)
    cfg = json.loads((tmp_path / "budget" / "resolved_config.json").read_text())
    assert code == 0 and cfg["train"]["steps"] == OPEN_ENDED_STEPS
    assert re.search(r"step \d+,", err) and not re.search(r"step \d+/", err)
    assert err.rstrip().endswith("ETA 00:00 (time budget)")
    code, _, _ = cli(["train", "--out", str(tmp_path / "count"), "--max-seconds", "60", "--steps", "3", *TINY], capsys)
    assert json.loads((tmp_path / "count" / "resolved_config.json").read_text())["train"]["steps"] == 3


def test_no_validation_with_zero_val_tasks_and_the_latest_weights_are_saved(tmp_path, capsys, monkeypatch):
    """train.val_tasks=0 validates nothing (not one meta-batch): no val records, the checkpoint
    holds the last step's weights, and the progress line shows no best meta-val loss."""
    import fewgen.training as training
    from fewgen.checkpoint import load

    def never(*args, **kwargs):
        raise AssertionError("validated with train.val_tasks=0")

    monkeypatch.setattr(training, "validation_loss", never)
    code, _, err = cli(["train", "--out", str(tmp_path / "run"), "--steps", "4", *TINY,
                        "--set", "train.val_tasks=0", "--set", "train.ckpt_every=3"], capsys)
    assert code == 0, err
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records and not any("val_loss" in r for r in records)
    ck = load(tmp_path / "run")
    assert ck.info["step"] == 4 and ck.info["best_val"] is None
    assert re.search(r"step 4/4 \(100%\), loss [\d.]+, best_val -,", err), err


def test_a_best_validation_loss_of_zero_is_shown(tmp_path, capsys, monkeypatch):
    import fewgen.training as training

    monkeypatch.setattr(training, "validation_loss", lambda *args, **kwargs: 0.0)
    code, _, err = cli(["train", "--out", str(tmp_path / "run"), "--steps", "5", *TINY], capsys)  # validates at 4
    assert code == 0, err
    assert re.search(r"step 5/5 \(100%\), loss [\d.]+, best_val 0\.00,", err), err
