"""What ``fewgen train`` tells its user (issue 17): the device it chose, progress in a log file,
training curves (``fewgen plot``) and TensorBoard events."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import fewgen
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


def test_progress_in_a_log_file_is_plain_lines_with_bytes_per_second(text_folder, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(fewgen.__file__).parents[1])}
    r = subprocess.run([sys.executable, "-m", "fewgen", "train", "--data", f"text:{text_folder}", "--out",
                        str(tmp_path / "run"), "--steps", "6", "--set", "model.hidden=8", "--set", "train.meta_batch=2",
                        "--set", "train.shots=2", "--set", "train.queries=3", "--set", "train.val_every=3",
                        "--set", "train.val_tasks=2", "--set", "train.log_every=2"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr  # a pipe is no terminal: no tqdm redraws
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr  # a 6-step run takes under PLAIN_EVERY seconds: the final line only
    assert re.fullmatch(r"train amortized: step 6/6 \(100%\), loss [\d.]+, best_val [\d.]+, [\d.]+ steps/s, "
                        r"[\d.]+[kM]?B/s, ETA 00:00", lines[0]), lines[0]
