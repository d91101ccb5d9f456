"""``train.compile``: one place compiles (the algorithm's hot part, once), with one eager fallback.

Real compiles of MAML take minutes on a CPU (inductor builds C++); the dynamo front end with
the ``eager`` backend traces the same code in seconds, which is what these tests need.
"""

from __future__ import annotations

import functools
import warnings

import pytest
import torch

from fewgen import checkpoint as ckpt
from fewgen.cli import main

TINY = ["--data", "toy", "--steps", "4", "--set", "model.family=toy_gauss", "--set", "train.meta_batch=4",
        "--set", "train.shots=2", "--set", "train.queries=3", "--set", "train.val_every=2",
        "--set", "train.val_tasks=2", "--set", "train.log_every=2", "--quiet"]


def train(out, algo: str, *extra: str) -> list[str]:
    """Run ``fewgen train``; the compile warnings it gave."""
    fmt = warnings.formatwarning
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(["train", "--out", str(out), "--algo", algo, *TINY, *extra]) == 0
    finally:
        warnings.formatwarning = fmt  # main() replaces it
    return [str(w.message) for w in caught if "torch.compile" in str(w.message)]


def test_compile_traces_the_hot_part_once(tmp_path, monkeypatch):
    real, calls = torch.compile, []

    def counting_compile(fn, **kw):
        calls.append(getattr(fn, "__name__", repr(fn)))
        return real(fn, backend="eager")

    monkeypatch.setattr(torch, "compile", counting_compile)
    warned = train(tmp_path / "run", "maml", "--compile")
    assert calls == ["task_losses"], calls  # MAML's vmapped chunk, not the meta-loss around it too
    assert len(warned) <= 1, warned  # a fallback to eager is allowed, once
    assert ckpt.load_train_state(tmp_path / "run")["step"] == 4


@pytest.mark.parametrize("algo", ["maml", "hybrid"])
def test_compile_failure_falls_back_once_and_trains_like_eager(algo, tmp_path, monkeypatch):
    train(tmp_path / "eager", algo)

    def broken_compile(fn, **kw):
        def call(*args, **kwargs):
            raise RuntimeError("no C++ compiler")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    warned = train(tmp_path / "compiled", algo, "--compile")
    assert len(warned) == 1 and "no C++ compiler" in warned[0], warned
    a, b = (ckpt.load_train_state(tmp_path / r) for r in ("eager", "compiled"))
    assert a["step"] == b["step"] == 4
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_amortized_compiles_its_whole_meta_loss(tmp_path, monkeypatch):
    real, calls = torch.compile, []

    def counting_compile(fn, **kw):
        calls.append(fn)
        return real(fn, backend="eager")

    monkeypatch.setattr(torch, "compile", counting_compile)
    assert len(train(tmp_path / "run", "amortized", "--compile")) <= 1
    assert [getattr(f, "__name__", "") for f in calls] == ["meta_loss"]
