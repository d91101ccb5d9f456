"""Multi-process and multi-machine meta-training on PyTorch's own engine, ``torch.distributed``.

Launched by ``torchrun`` (one process per GPU, or a few per CPU machine), every process runs
the same :func:`fewgen.training.train` loop, and this module is what makes them one run:

- every rank samples the *same* global meta-batch (a pure function of ``(seed, step)``) and
  keeps tasks ``rank::world`` of it (:func:`shard`, :func:`shard_episode`);
- its loss is the mean over its shard times ``len(shard) / meta_batch``, and the gradients
  are SUM-all-reduced in one flat bucket (:func:`all_reduce_grads`), so every rank holds the
  gradient of the global meta-batch mean exactly as one process would compute it, whatever
  the world size and however unequal the shards;
- the noise of the loss comes from a :class:`~fewgen.noise.ShardGenerator`: the global
  meta-batch's draw, sliced to the shard, so it does not depend on the world size either;
- rank 0 alone validates, logs and writes checkpoints; the saved state (weights, optimiser,
  step) does not depend on the world size, so a run resumes on any number of processes.

Not launched by torchrun (or with ``WORLD_SIZE=1``) every function here is a no-op and the
single-process loop is exactly the one without this module. gloo on CPU, NCCL on GPU.

Why not ``DistributedDataParallel``: parameters are data here (a dict run through
``functional_call``, DESIGN rule 1) and gradients come from whatever the meta-algorithm does
(MAML's inner loop included), so one flat all-reduce after ``backward`` is simpler and as fast
for models of this size.
"""

from __future__ import annotations

import os
import warnings

import torch
import torch.distributed as dist
from torch import Tensor

from .errors import ConfigError, FewgenError
from .tasks.base import Episode

_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")  # what torchrun sets (env:// rendezvous)


# ----------------------------------------------------------------------------- who am I

def launched() -> bool:
    """True when started by torchrun (or any env:// launcher) with more than one process."""
    return all(k in os.environ for k in _ENV) and int(os.environ["WORLD_SIZE"]) > 1


def initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    if initialized():
        return dist.get_rank()
    return int(os.environ["RANK"]) if launched() else 0


def world_size() -> int:
    """The number of processes of the run (1 when not distributed)."""
    return dist.get_world_size() if initialized() else 1


def local_rank() -> int:
    """This process's rank on its machine: the GPU it uses."""
    return int(os.environ.get("LOCAL_RANK", 0)) if launched() else 0


def is_main() -> bool:
    """True on the process that logs, validates and writes checkpoints (rank 0)."""
    return rank() == 0


# ----------------------------------------------------------------------------- set-up

def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA if visible, else CPU), ``cpu``, ``cuda`` or ``cuda:N`` -> a device.

    Under torchrun, ``cuda`` and ``auto`` mean this process's own GPU, ``cuda:LOCAL_RANK``.
    """
    name = name.strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise FewgenError(f"device '{name}': no CUDA GPU is visible to this PyTorch "
                              f"({torch.__version__}); use --device cpu or --device auto")
        if name == "cuda":
            return torch.device("cuda", local_rank() % torch.cuda.device_count())
        return torch.device(name)
    raise ConfigError(f"unknown train.device '{name}'; valid: auto, cpu, cuda, cuda:N")


def setup(device: torch.device) -> bool:
    """Join the process group when launched by torchrun (gloo on CPU, NCCL on CUDA).

    A no-op when not launched, or when the caller already initialised a group. Returns True
    when this call created the group (then :func:`teardown` destroys it).
    """
    if not launched() or initialized():
        return False
    if not dist.is_available():  # pragma: no cover - every official build has it
        raise FewgenError("this PyTorch build has no torch.distributed; run without torchrun")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method="env://")
    return True


def teardown(created: bool) -> None:
    """Destroy the process group if :func:`setup` created it."""
    if created and initialized():
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    """Where collective buffers live: the current GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ----------------------------------------------------------------------------- sharding

def shard(num_tasks: int, r: int | None = None, world: int | None = None) -> Tensor:
    """The global indices of this rank's tasks of a meta-batch: ``r::world`` (int64)."""
    r = rank() if r is None else r
    world = world_size() if world is None else world
    if num_tasks < world:
        raise ConfigError(f"train.meta_batch ({num_tasks}) is smaller than the number of processes ({world}); "
                          "every process needs at least one task of each meta-batch")
    return torch.arange(r, num_tasks, world)


def shard_episode(ep: Episode, tasks: Tensor) -> Episode:
    """The tasks ``tasks`` of an episode, in that order."""
    return Episode(ep.support[tasks], ep.support_mask[tasks], ep.query[tasks],
                   tuple(ep.names[i] for i in tasks.tolist()), ep.query_mask[tasks])


# ----------------------------------------------------------------------------- collectives

def all_reduce_grads(params: list[Tensor], scalars: list[Tensor | float]) -> list[float]:
    """SUM-all-reduce the gradients of ``params`` in place, and ``scalars``, in one flat bucket.

    Parameters without a gradient are skipped (the same ones on every rank, as every rank
    runs the same code). With one process nothing is communicated and ``scalars`` come back
    as floats. Returns the reduced scalars.
    """
    if world_size() == 1:
        return [float(s) for s in scalars]
    grads = [p.grad for p in params if p.grad is not None]
    dev = _comm_device()
    flat = torch.cat([g.reshape(-1).to(dev, torch.float32) for g in grads]
                     + [torch.tensor([float(s) for s in scalars], dtype=torch.float32, device=dev)])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    pos = 0
    for g in grads:
        g.copy_(flat[pos:pos + g.numel()].view_as(g))
        pos += g.numel()
    return flat[pos:].tolist()


def broadcast_(tensors: list[Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` on every rank with rank ``src``'s values (one flat bucket)."""
    if world_size() == 1 or not tensors:
        return
    dev = _comm_device()
    with torch.no_grad():
        flat = torch.cat([t.detach().reshape(-1).to(dev, torch.float32) for t in tensors])
        dist.broadcast(flat, src)
        pos = 0
        for t in tensors:
            t.copy_(flat[pos:pos + t.numel()].view_as(t))
            pos += t.numel()


def broadcast_flag(flag: bool, src: int = 0) -> bool:
    """Rank ``src``'s decision (e.g. early stopping), on every rank."""
    if world_size() == 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=_comm_device())
    dist.broadcast(t, src)
    return bool(t.item())


def broadcast_object(obj: object, src: int = 0) -> object:
    """Rank ``src``'s (picklable) object, on every rank; used for the resume state."""
    if world_size() == 1:
        return obj
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src)
    return box[0]


def barrier() -> None:
    """Wait for every rank (a no-op with one process)."""
    if world_size() > 1:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def warn_main(message: str) -> None:
    """A warning printed once per run (by rank 0), not once per process."""
    if is_main():
        warnings.warn(message, stacklevel=2)
