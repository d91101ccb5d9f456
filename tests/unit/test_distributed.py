"""Multi-process meta-training (gloo on CPU): 2 processes = 1 process, and interrupted runs resume.

The 2-process runs are real: ``torchrun --nproc_per_node 2 -m fewgen train`` as a subprocess,
and ``torch.multiprocessing`` workers with the environment torchrun would set.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from conftest import make_image_folder
from fewgen import distributed
from fewgen.checkpoint import load_train_state
from fewgen.config import Config, apply_overrides, replace
from fewgen.meta.amortized import Amortized
from fewgen.tasks.base import episode_generator, shard_generator, task_randn
from fewgen.training import compiled, train

STEPS, LR = 6, 1e-3
# Train settings as CLI overrides; meta_batch 5 over 2 processes gives unequal shards (3 + 2).
SETTINGS = ["data.image_size=8", "model.hidden=4", "model.latent=4", "model.context=8", "model.extra.features=16",
            f"train.steps={STEPS}", f"train.lr={LR}", "train.meta_batch=5", "train.shots=2", "train.queries=3",
            "train.val_every=3", "train.val_tasks=2", "train.log_every=2", "train.ckpt_every=100"]


def tiny_config(data: Path, **train_changes) -> Config:
    cfg = apply_overrides(Config(), [f"data.spec=folder:{data}", *SETTINGS])
    return replace(cfg, train=train_changes) if train_changes else cfg


def final_state(run: Path) -> dict:
    state = load_train_state(run)
    assert state is not None, f"{run}: no train_state.pt"
    return state


def assert_same_run(a: dict, b: dict, exact: bool) -> None:
    """Same parameters. Across world sizes float sums differ in the last bits; where the
    gradient is zero in exact arithmetic (conv biases before a GroupNorm) Adam normalises that
    rounding noise into lr-sized steps, so those elements are only bounded: one Adam step moves
    at most lr * (1 - beta1) / sqrt(1 - beta2) ~ 3.2 lr, so two runs differ by < 6.4 lr * steps."""
    assert a["step"] == b["step"]
    for i, (k, x) in enumerate(a["model"].items()):
        y = b["model"][k]
        if exact:
            assert torch.equal(x, y), k
            continue
        live = a["optim"]["state"][i]["exp_avg_sq"].sqrt() > 1e-6  # a real gradient flows here
        torch.testing.assert_close(x[live], y[live], rtol=1e-4, atol=1e-5, msg=k)
        assert ((x - y)[~live].abs() <= 6.4 * LR * STEPS).all(), k


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread, as torchrun gives each worker: on a busy machine with few cores,
    two OpenMP threads per process wait on each other at every tiny op (100x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("dist") / "imgs", tasks=12, per_task=6, size=8)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> dict:
    """An uninterrupted 1-process run."""
    out = tmp_path_factory.mktemp("ref") / "run"
    res = train(tiny_config(data), out, progress=False)
    assert res.steps == STEPS and not res.interrupted
    return final_state(out)


def sigterm_at(call: int, rank: int | None = None):
    """Patch the amortized meta-loss to send this process SIGTERM on its ``call``-th training call."""
    calls = []
    original = Amortized.meta_loss

    def meta_loss(self, model, params, extra, ep, generator):
        if model.training:
            calls.append(1)
            if len(calls) == call and (rank is None or distributed.rank() == rank):
                signal.raise_signal(signal.SIGTERM)
        return original(self, model, params, extra, ep, generator)

    return meta_loss


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- pieces

def test_shards_cover_the_meta_batch_once():
    shards = [distributed.shard(5, r, 2) for r in range(2)]
    assert shards[0].tolist() == [0, 2, 4] and shards[1].tolist() == [1, 3]
    with pytest.raises(Exception, match="meta_batch"):
        distributed.shard(1, 0, 2)


def test_shard_noise_is_the_global_noise_sliced():
    full = task_randn((5, 3, 4), episode_generator(7, 2), "cpu")
    for r in range(2):
        mine = distributed.shard(5, r, 2)
        part = task_randn((len(mine), 3, 4), shard_generator(7, 2, mine, 5), "cpu")
        assert torch.equal(part, full[mine])
    with pytest.raises(ValueError, match="whole meta-batch"):
        task_randn((1, 3, 4), shard_generator(7, 2, torch.tensor([0, 2]), 5), "cpu")


def test_not_launched_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.launched() and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.setup(torch.device("cpu")) is False
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    assert distributed.all_reduce_grads([p], [torch.tensor(1.5), True]) == [1.5, 1.0]
    assert torch.equal(p.grad, torch.full((3,), 2.0))
    assert distributed.resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert distributed.resolve_device("auto").type == "cpu"
        with pytest.raises(Exception, match="no CUDA"):
            distributed.resolve_device("cuda")


# ----------------------------------------------------------------------------- whole runs

def test_torchrun_two_processes_match_one_process(data, reference, tmp_path):
    out = tmp_path / "run2"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "fewgen", "train", "--data", f"folder:{data}", "--out", str(out), "--quiet"]
    for s in SETTINGS:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(distributed.__file__).parents[1])}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained 6 steps") == 1  # rank 0 reports, once
    assert_same_run(reference, final_state(out), exact=False)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [2, 4, 6]  # one writer: no duplicate lines


def test_sigterm_mid_run_resumes_exactly(data, reference, tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = tiny_config(data)
    monkeypatch.setattr(Amortized, "meta_loss", sigterm_at(3))
    res = train(cfg, out, progress=False)
    assert res.interrupted and res.steps == 3  # stops at the end of the step it was signalled in
    monkeypatch.undo()
    res = train(cfg, out, resume=True, progress=False)
    assert res.steps == STEPS and not res.interrupted
    assert_same_run(reference, final_state(out), exact=True)


def _worker(r: int, world: int, port: int, data: str, out: str) -> None:
    os.environ.update(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    Amortized.meta_loss = sigterm_at(3, rank=1)  # only rank 1 is signalled; both must stop together
    res = train(tiny_config(Path(data)), out, progress=False)
    Path(out, f"rank{r}.json").write_text(json.dumps({"steps": res.steps, "interrupted": res.interrupted}))


def test_two_process_run_stops_together_and_resumes_on_one(data, reference, tmp_path):
    out = tmp_path / "run"
    mp.start_processes(_worker, args=(2, free_port(), str(data), str(out)), nprocs=2, start_method="spawn")
    for r in range(2):
        assert json.loads((out / f"rank{r}.json").read_text()) == {"steps": 3, "interrupted": True}
    assert final_state(out)["step"] == 3
    res = train(tiny_config(data), out, resume=True, progress=False)  # resumed by 1 process
    assert res.steps == STEPS
    assert_same_run(reference, final_state(out), exact=False)


def test_compile_failure_falls_back_to_eager_with_the_same_noise(monkeypatch):
    def broken_compile(fn):
        def call(*args):
            torch.randn(3, generator=args[-1])  # draws from the stream, then fails
            raise RuntimeError("no C++ compiler")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    fn = compiled(lambda g: torch.randn(2, generator=g))
    with pytest.warns(UserWarning, match="torch.compile failed"):
        out = fn(torch.Generator().manual_seed(0))
    assert torch.equal(out, torch.randn(2, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(fn(torch.Generator().manual_seed(1)), torch.randn(2, generator=torch.Generator().manual_seed(1)))
