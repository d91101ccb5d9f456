"""Shared fixtures: the real Omniglot archives and small generated image folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# Tests run tiny ops, where extra threads cost more than they give (and compete with the
# subprocesses some tests start): one thread unless OMP_NUM_THREADS says otherwise.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

OMNIGLOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"


@pytest.fixture()
def one_thread():
    """One intra-op thread for a test of tiny vmapped ops: faster, and kinder to a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def omniglot_dir() -> Path:
    if not any(OMNIGLOT.glob("*.zip")):
        pytest.skip(f"Omniglot archives not found in {OMNIGLOT}")
    return OMNIGLOT


@pytest.fixture(scope="session")
def omniglot_tasks(omniglot_dir):
    from fewgen.tasks.spec import load_tasks

    return load_tasks(f"omniglot:{omniglot_dir}")


def make_image_folder(root: Path, tasks: int = 6, per_task: int = 8, size: int = 40, seed: int = 0) -> Path:
    """Random blobby images: each task is a different random stroke pattern plus noise."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for t in range(tasks):
        d = root / f"task{t:02d}"
        d.mkdir()
        base = rng.random((size // 4, size // 4)) > 0.6
        for i in range(per_task):
            a = np.kron(base, np.ones((4, 4))) * 255
            a = np.where(rng.random(a.shape) < 0.05, 255 - a, a).astype(np.uint8)
            mode = ["L", "RGB", "RGBA", "P"][i % 4]
            img = Image.fromarray(255 - a, "L").convert(mode)
            img.save(d / f"{i}.png")
    return root


@pytest.fixture()
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "imgs")


def cli_in_process(args: list[str], capsys, monkeypatch):
    """``fewgen.cli.main(args)`` in this process -> a CompletedProcess (exit status, stdout,
    stderr): the command line's code path without the seconds of a new interpreter."""
    import subprocess
    import warnings

    from fewgen.cli import main

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # main() replaces it
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as e:  # argparse
        code = e.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)
