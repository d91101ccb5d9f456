"""The meta-training loop: episodes, the meta-optimiser, validation, checkpoints, resume.

One run folder is one checkpoint (see :mod:`fewgen.checkpoint`): ``model.safetensors`` holds
the weights with the best meta-validation loss (early stopping on held-out *tasks*), and
``train_state.pt`` the latest weights and optimiser state for exact resume. ``metrics.jsonl``
gets one JSON line per log or validation event. Episode ``i`` is a pure function of
``(seed, i)`` and its noise of ``(seed + 1, i)``, so a resumed run is bitwise identical to an
uninterrupted one on CPU.

Launched by ``torchrun``, the same loop runs in every process: each meta-batch's tasks are
sharded across the ranks and the meta-gradient is all-reduced (see :mod:`fewgen.distributed`),
so the run does not depend on the number of processes and resumes on any number of them.
SIGTERM (and, with several processes, Ctrl-C) stops the run at the end of the current step,
with a resumable state saved.
"""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import distributed
from .config import Config, config_to_dict
from .errors import CheckpointError, ConfigError, FewgenError, TrainingDiverged
from .meta import get_algorithm
from .models import GenerativeModel, build_model, params_of
from .tasks.base import Episode, TaskSet, episode_generator, shard_generator
from .tasks.spec import load_tasks


@dataclass
class TrainResult:
    """What a training run produced."""

    out: Path
    steps: int
    best_val: float | None
    seconds: float
    interrupted: bool = False


def data_meta(ts: TaskSet) -> dict[str, Any]:
    """The facts about the data a model needs to be rebuilt (stored in checkpoints)."""
    return {**ts.meta, "example_shape": list(ts.example_shape), "modality": ts.modality}


def episode_bytes(ep: Episode) -> int:
    """Text: the tokens (bytes and EOS) of an episode's present shots and queries."""
    from .tasks.text import PAD

    shots = ((ep.support != PAD) & ep.support_mask[..., None]).sum()
    return int(shots + (ep.query != PAD).sum())


def augmenter(ts: TaskSet):
    """The task augmentation for a modality (None where there is none)."""
    if ts.modality == "image":
        from .tasks.images import augment_images

        return augment_images
    if ts.modality == "text":
        from .tasks.text import permute_scripts

        return permute_scripts
    return None


def validation_loss(model: GenerativeModel, algo, extra, val: TaskSet, cfg: Config,
                    device: torch.device | str | None = None) -> float:
    """Mean meta-loss over fixed meta-val episodes (full K-shot support, fixed noise)."""
    tc = cfg.train
    device = device if device is not None else distributed.resolve_device(tc.device)
    total, n = 0.0, 0
    batches = max(1, math.ceil(min(tc.val_tasks, max(len(val), 1)) / tc.meta_batch))
    params = params_of(model)
    for i in range(batches):
        ep = val.sample_episode(tc.seed + 10_007, i, tc.meta_batch, tc.shots, tc.queries, min_shots=tc.shots)
        # No outer graph: torch.func.grad still differentiates the inner loops (it ignores an
        # enclosing no_grad), so the value is the training objective's, at a fraction of the memory.
        with torch.no_grad():
            loss = algo.meta_loss(model, params, extra, ep.to(device), episode_generator(tc.seed + 20_011, i))
        total += float(loss)
        n += 1
    return total / n


def _log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def compiled(fn):
    """``torch.compile(fn)``; if compiling fails (on first use), warn and run ``fn`` eagerly.

    The failed attempt may have drawn from a generator argument; its state is restored, so
    the fallback computes exactly what eager mode would have."""
    def fallback(e: Exception) -> None:
        distributed.warn_main(f"torch.compile failed ({type(e).__name__}: {(str(e) or '?').splitlines()[0][:200]}); "
                              "running the meta-loss eagerly")

    try:
        state = {"fn": torch.compile(fn), "tried": False}
    except Exception as e:  # noqa: BLE001 - e.g. a Python version torch.compile does not support
        fallback(e)
        return fn

    def call(*args):
        if state["tried"]:
            return state["fn"](*args)
        gens = [(a, a.get_state()) for a in args if isinstance(a, torch.Generator)]
        try:
            result = state["fn"](*args)
        except Exception as e:  # noqa: BLE001 - any compiler failure means: run eagerly
            fallback(e)
            for g, s in gens:
                g.set_state(s)
            state["fn"] = fn
            result = fn(*args)
        state["tried"] = True
        return result

    return call


def train(cfg: Config, out: str | Path, resume: bool = False, progress: bool = True,
          tasks: TaskSet | None = None) -> TrainResult:
    """Meta-train ``cfg.model.family`` with ``cfg.train.algo`` on ``cfg.data.spec``; write a
    checkpoint folder at ``out``. With ``resume`` an interrupted run continues exactly.

    Under ``torchrun`` every process calls this; they join one process group for the run."""
    device = distributed.resolve_device(cfg.train.device)
    if cfg.train.precision not in ("fp32", "bf16"):
        raise ConfigError(f"unknown train.precision '{cfg.train.precision}'; valid: fp32, bf16")
    created = distributed.setup(device)
    try:
        return _train(cfg, Path(out), resume, progress, tasks, device)
    finally:
        distributed.teardown(created)


def _train(cfg: Config, out: Path, resume: bool, progress: bool, tasks: TaskSet | None,
           device: torch.device) -> TrainResult:
    tc = cfg.train
    main, world = distributed.is_main(), distributed.world_size()
    torch.manual_seed(tc.seed)
    ts = tasks if tasks is not None else load_tasks(cfg.data.spec, cfg.data)
    splits = ts.split(cfg.data.split_fractions, cfg.data.split_seed, cfg.data.split_file)
    train_ts = splits["train"].with_min_examples(tc.shots + tc.queries)
    val_ts = splits["val"].with_min_examples(tc.shots + tc.queries)
    if len(train_ts) == 0:
        raise FewgenError(f"{cfg.data.spec}: no meta-train task has {tc.shots + tc.queries} examples "
                          f"(shots {tc.shots} + queries {tc.queries}); lower train.shots or train.queries")
    meta = data_meta(ts)
    model = build_model(cfg.model, meta).to(device)
    algo = get_algorithm(tc)
    extra = {k: torch.nn.Parameter(v.to(device)) for k, v in algo.extra_params(model).items()}
    meta_params = list(model.parameters()) + list(extra.values())
    opt = torch.optim.Adam(meta_params, lr=tc.lr, weight_decay=tc.weight_decay)
    # An algorithm that compiles its own hot part (``compiles_itself``) is not compiled again.
    loss_fn = compiled(algo.meta_loss) if tc.compile and not getattr(algo, "compiles_itself", False) \
        else algo.meta_loss
    bf16 = tc.precision == "bf16"
    if bf16 and device.type == "cpu":
        distributed.warn_main("train.precision bf16 on CPU: autocast works but is usually slower than fp32")
    if world > 1:
        distributed.shard(tc.meta_batch)  # fail early (every rank) when meta_batch < world size
    augment = augmenter(ts) if cfg.data.augment else None
    info = {"data": meta, "algo": tc.algo, "splits": {k: len(v) for k, v in splits.items()}}

    start, best_val, bad_vals, elapsed = 0, None, 0, 0.0
    state = ckpt.load_train_state(out) if resume and main else None
    if resume and world > 1:  # rank 0 reads it and sends it: machines need not share a file system
        state = distributed.broadcast_object(state)
    if resume and state is None:
        raise FewgenError(f"{out}: nothing to resume (no {ckpt.STATE_FILE})")
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            for k, v in state.get("extra", {}).items():
                extra[k].data.copy_(v)
            opt.load_state_dict(state["optim"])
            start, best_val, bad_vals, elapsed = state["step"], state["best_val"], state["bad_vals"], state["elapsed"]
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{out / ckpt.STATE_FILE}: does not match this run's model "
                                  f"({str(e).splitlines()[0][:120]})") from None
        best_val = None if best_val is None or math.isnan(best_val) else best_val
    elif main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.jsonl").unlink(missing_ok=True)
        (out / "resolved_config.json").write_text(json.dumps(config_to_dict(cfg), indent=2), encoding="utf-8")

    distributed.broadcast_(meta_params)  # every rank starts from rank 0's weights (a no-op alone)

    def log(record: dict[str, Any]) -> None:
        if main:
            _log(out / "metrics.jsonl", record)

    def save_model() -> None:  # rank 0 writes checkpoints
        if not main:
            return
        ckpt.save(out, model, cfg, {**info, "step": step, "best_val": best_val},
                  {k: v.detach() for k, v in extra.items()})

    def save_state() -> None:
        if not main:
            return
        ckpt.save_train_state(out, {
            "step": step, "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "extra": {k: v.detach().clone() for k, v in extra.items()}, "optim": opt.state_dict(),
            "best_val": float("nan") if best_val is None else best_val, "bad_vals": bad_vals, "elapsed": elapsed,
        })

    # SIGTERM (and Ctrl-C with several processes, which must all stop at the same step) ends
    # the run like Ctrl-C at the end of the current step: a resumable state is saved.
    def validate() -> bool:
        """Meta-validate; keep the weights if they are the best so far. True if improved."""
        nonlocal best_val
        model.eval()
        v = validation_loss(model, algo, extra, val_ts, cfg, device)
        if not math.isfinite(v):
            raise TrainingDiverged(f"meta-validation loss became {v} at step {step}; stopped. "
                                   f"The last good checkpoint in {out} is kept")
        improved = best_val is None or v < best_val
        if improved:
            best_val = v
            save_model()
        log({"step": step, "val_loss": v, "best_val": best_val})
        return improved

    # A signal never lands mid-update: the step finishes, then the state is saved. A second
    # Ctrl-C stops a stuck run at once.
    stop_signal: list[int] = []
    caught = (signal.SIGTERM, signal.SIGINT)
    old_handlers = {}

    def on_signal(signum: int, _frame: Any) -> None:
        stop_signal.append(signum)
        if len(stop_signal) > 1:
            raise KeyboardInterrupt

    try:
        for sig in caught:
            old_handlers[sig] = signal.signal(sig, on_signal)
    except ValueError:  # not the main thread
        pass
    step = start
    interrupted = False
    bar = tqdm(total=tc.steps, initial=start, disable=not progress or not main, desc=f"train {tc.algo}",
               dynamic_ncols=True)
    note = bar.write if main else (lambda _: None)
    t0, last_t, last_step = time.time() - elapsed, time.time(), start
    text = ts.modality == "text"
    tokens = 0  # text: bytes (EOS included) of the present shots and queries since the last log
    params = params_of(model)
    try:
        while step < tc.steps:
            # The global meta-batch, identical on every rank; with several processes each keeps
            # its tasks r::world and the noise generator knows them (noise is sliced, not redrawn).
            ep = train_ts.sample_episode(tc.seed, step, tc.meta_batch, tc.shots, tc.queries, tc.min_shots)
            if world > 1:
                mine = distributed.shard(ep.num_tasks)
                g = shard_generator(tc.seed + 1, step, mine, ep.num_tasks)
            else:
                g = episode_generator(tc.seed + 1, step)
            if augment is not None:
                ep = augment(ep, g)
            if world > 1:
                ep = distributed.shard_episode(ep, mine)
            if text:
                tokens += episode_bytes(ep)
            model.train()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(model, params, extra, ep.to(device), g)
            if world > 1:  # this shard's share of the global mean; the SUM-all-reduce adds the shares
                loss = loss * (len(mine) / tc.meta_batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            out_of_time = tc.max_seconds > 0 and time.time() - t0 >= tc.max_seconds
            # One all-reduce carries the gradients, the loss and the stop flags, so every rank
            # takes the same decisions (diverged, out of time, signalled) at the same step.
            loss_value, out_of_time, stop = distributed.all_reduce_grads(
                meta_params, [loss.detach(), out_of_time, len(stop_signal) > 0])
            out_of_time, stop = out_of_time > 0, stop > 0
            if not math.isfinite(loss_value):
                raise TrainingDiverged(f"loss became {loss_value} at step {step}; stopped. The last good "
                                       f"checkpoint in {out} is kept (try a lower train.lr)")
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(meta_params, tc.grad_clip)
            opt.step()
            step += 1
            bar.update(1)
            if step % tc.log_every == 0 or step == tc.steps:
                now = time.time()
                rate = (step - last_step) / max(now - last_t, 1e-9)
                speed = {"bytes_per_s": tokens * world / max(now - last_t, 1e-9)} if text else {}
                last_t, last_step, tokens = now, step, 0
                bar.set_postfix(loss=f"{loss_value:.2f}", best_val=f"{best_val:.2f}" if best_val else "-",
                                **({"bytes/s": f"{speed['bytes_per_s']:.0f}"} if text else {}))
                log({"step": step, "loss": loss_value, "steps_per_s": rate,
                     "tasks_per_s": rate * tc.meta_batch, **speed, "time": now - t0})
            if len(val_ts) and (step % tc.val_every == 0 or step == tc.steps):
                if main:  # rank 0 validates; the others wait at the next collective
                    bad_vals = 0 if validate() else bad_vals + 1
                if tc.patience and distributed.broadcast_flag(bool(main and bad_vals >= tc.patience)):
                    note(f"early stopping at step {step}: no meta-val improvement in {bad_vals} validations")
                    elapsed = time.time() - t0
                    save_state()
                    break
            if main and out_of_time and len(val_ts) and step % tc.val_every:
                validate()  # a last validation, so the saved model is judged like the others
            if step % tc.ckpt_every == 0 or step == tc.steps or out_of_time:
                elapsed = time.time() - t0
                if not len(val_ts):
                    save_model()
                save_state()
            if out_of_time:
                note(f"time budget of {tc.max_seconds:.0f}s reached at step {step}")
                break
            if stop:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
        elapsed = time.time() - t0
        save_state()
        if main and not (out / ckpt.MODEL_FILE).exists():
            save_model()
        note(f"interrupted at step {step}; resumable state saved in {out} (resume with --resume)")
    finally:
        bar.close()
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
    if main and not (out / ckpt.MODEL_FILE).exists():
        save_model()
    distributed.barrier()  # when train returns on any rank, the checkpoint is complete
    return TrainResult(out, step, best_val, time.time() - t0, interrupted)
