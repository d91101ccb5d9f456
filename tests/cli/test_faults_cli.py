"""Faults during ``fewgen train``: SIGTERM and Ctrl-C save a resumable state and exit cleanly,
``--resume`` finishes with the parameters of an uninterrupted run (bitwise, CPU), and a NaN
loss stops with one clear line and keeps the last good checkpoint (issue 7).

The interrupted runs are real ``python -m fewgen train`` processes; the reference and the
resumed runs call the same ``fewgen.cli.main`` in this process, on one thread like them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from conftest import make_image_folder
from fewgen import checkpoint as ckpt
from fewgen.cli import main

STEPS = 60
TINY = ["--set", "data.image_size=8", "--set", "model.hidden=4", "--set", "model.latent=4", "--set", "model.context=8",
        "--set", "model.extra.features=16", "--set", "train.meta_batch=4", "--set", "train.shots=2",
        "--set", "train.queries=3", "--set", "train.val_every=10", "--set", "train.val_tasks=2",
        "--set", "train.log_every=2", "--set", "train.ckpt_every=1000", "--quiet"]
# ckpt_every is out of reach: a resume state on disk before the end can only come from the
# interruption handling itself.


_THREADS = torch.get_num_threads()


def setup_module() -> None:
    # The subprocesses run on one thread (OMP_NUM_THREADS=1); so do the in-process runs, so
    # float reductions are ordered alike and parameters can be compared bitwise.
    torch.set_num_threads(1)


def teardown_module() -> None:
    torch.set_num_threads(_THREADS)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("faults") / "imgs", tasks=12, per_task=8, size=8)


def train_args(data: Path, out: Path) -> list[str]:
    return ["train", "--data", f"folder:{data}", "--out", str(out), "--steps", str(STEPS), *TINY]


def cli(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # main() replaces it
    capsys.readouterr()
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def interrupted_run(data: Path, out: Path, sig: int) -> subprocess.CompletedProcess:
    """Start ``fewgen train``, send ``sig`` as soon as it logs its first steps."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "fewgen", *train_args(data, out)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    log = out / "metrics.jsonl"
    while not (log.exists() and log.stat().st_size) and p.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    assert not (out / ckpt.STATE_FILE).exists()
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=120)
    return subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> dict:
    """An uninterrupted run through the same command line."""
    out = tmp_path_factory.mktemp("ref") / "run"
    fmt = warnings.formatwarning
    try:
        assert main(train_args(data, out)) == 0
    finally:
        warnings.formatwarning = fmt  # main() replaces it
    return {"state": ckpt.load_train_state(out), "model": ckpt.load(out).model.state_dict()}


def assert_same(run: Path, reference: dict) -> None:
    state = ckpt.load_train_state(run)
    assert state["step"] == reference["state"]["step"] == STEPS
    for k, v in reference["state"]["model"].items():
        assert torch.equal(state["model"][k], v), k
    for i, s in reference["state"]["optim"]["state"].items():
        assert all(torch.equal(state["optim"]["state"][i][n], t) for n, t in s.items()), i
    for k, v in reference["model"].items():  # the best-validation weights as well
        assert torch.equal(ckpt.load(run).model.state_dict()[k], v), k


def stopped_step(r: subprocess.CompletedProcess) -> int:
    line = [x for x in r.stdout.splitlines() if x.startswith("stopped ")]
    assert line, r.stdout
    return int(line[0].split()[1])


def test_sigterm_saves_a_resumable_state_and_resume_is_bitwise_exact(data, reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    r = interrupted_run(data, out, signal.SIGTERM)
    assert "Traceback" not in r.stderr and r.stderr.strip() == "", r.stderr
    assert r.returncode == 130, (r.returncode, r.stdout, r.stderr)
    step = stopped_step(r)
    assert 2 <= step < STEPS and f"interrupted at step {step}; resumable state saved in {out}" in r.stdout
    assert ckpt.load_train_state(out)["step"] == step
    ckpt.load(out)  # a complete checkpoint is there too

    code, stdout, stderr = cli(["train", "--out", str(out), "--resume", "--quiet"], monkeypatch, capsys)
    assert code == 0 and stderr == "" and f"trained {STEPS} steps" in stdout, (stdout, stderr)
    assert_same(out, reference)


def test_ctrl_c_saves_a_resumable_state_and_resume_finishes(data, reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    r = interrupted_run(data, out, signal.SIGINT)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 130, (r.returncode, r.stdout, r.stderr)
    step = stopped_step(r)
    assert step < STEPS and "resume with --resume" in r.stdout
    assert ckpt.load_train_state(out)["step"] == step
    code, stdout, stderr = cli(["train", "--out", str(out), "--resume", "--quiet"], monkeypatch, capsys)
    assert code == 0 and ckpt.load_train_state(out)["step"] == STEPS, (stdout, stderr)


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch, capsys):
    from fewgen.meta.amortized import Amortized

    out = tmp_path / "run"
    real, calls, kept = Amortized.meta_loss, [], {}

    def meta_loss(self, model, params, extra, episode, generator):
        loss = real(self, model, params, extra, episode, generator)
        if model.training:
            calls.append(1)
            if len(calls) == 7:  # step 6: steps 0..5 went well; checkpoints were written at step 6
                kept.update({f: (out / f).read_bytes() for f in (ckpt.MODEL_FILE, ckpt.CONFIG_FILE, ckpt.STATE_FILE)})
                return loss * float("nan")
        return loss

    monkeypatch.setattr(Amortized, "meta_loss", meta_loss)
    code, stdout, stderr = cli([*train_args(data, out), "--set", "train.val_every=2", "--set", "train.ckpt_every=2"],
                               monkeypatch, capsys)
    assert code == 2
    assert stderr.splitlines() == [f"fewgen: error: loss became nan at step 6; stopped. The last good checkpoint in "
                                   f"{out} is kept (try a lower train.lr)"]
    assert {f: (out / f).read_bytes() for f in kept} == kept
    assert ckpt.load_train_state(out)["step"] == 6 and ckpt.load(out).model is not None
