"""What ``fewgen train`` tells its user (issue 17): the device it chose, progress in a log file,
training curves (``fewgen plot``) and TensorBoard events."""

from __future__ import annotations

import json
import warnings

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
