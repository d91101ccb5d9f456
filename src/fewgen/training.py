"""The meta-training loop: episodes, the meta-optimiser, validation, checkpoints, resume.

One run folder is one checkpoint (see :mod:`fewgen.checkpoint`): ``model.safetensors`` holds
the weights with the best meta-validation loss (early stopping on held-out *tasks*), and
``train_state.pt`` the latest weights and optimiser state for exact resume. ``metrics.jsonl``
gets one JSON line per log or validation event. Episode ``i`` is a pure function of
``(seed, i)`` and its noise of ``(seed + 1, i)``, so a resumed run is bitwise identical to an
uninterrupted one on CPU.
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
from .config import Config, config_to_dict
from .errors import FewgenError, TrainingDiverged
from .meta import get_algorithm
from .models import Generator, build_model, params_of
from .tasks.base import Episode, TaskSet, episode_generator
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


def augmenter(ts: TaskSet):
    """The task augmentation for a modality (None where there is none)."""
    if ts.modality == "image":
        from .tasks.images import augment_images

        return augment_images
    return None


def validation_loss(model: Generator, algo, extra, val: TaskSet, cfg: Config) -> float:
    """Mean meta-loss over fixed meta-val episodes (full K-shot support, fixed noise)."""
    tc = cfg.train
    total, n = 0.0, 0
    batches = max(1, math.ceil(min(tc.val_tasks, max(len(val), 1)) / tc.meta_batch))
    params = params_of(model)
    for i in range(batches):
        ep = val.sample_episode(tc.seed + 10_007, i, tc.meta_batch, tc.shots, tc.queries, min_shots=tc.shots)
        loss = algo.meta_loss(model, params, extra, ep.to(tc.device), episode_generator(tc.seed + 20_011, i))
        total += float(loss.detach())
        n += 1
    return total / n


def _log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def train(cfg: Config, out: str | Path, resume: bool = False, progress: bool = True,
          tasks: TaskSet | None = None) -> TrainResult:
    """Meta-train ``cfg.model.family`` with ``cfg.train.algo`` on ``cfg.data.spec``; write a
    checkpoint folder at ``out``. With ``resume`` an interrupted run continues exactly."""
    out = Path(out)
    tc = cfg.train
    torch.manual_seed(tc.seed)
    ts = tasks if tasks is not None else load_tasks(cfg.data.spec, cfg.data)
    splits = ts.split(cfg.data.split_fractions, cfg.data.split_seed, cfg.data.split_file)
    train_ts = splits["train"].with_min_examples(tc.shots + tc.queries)
    val_ts = splits["val"].with_min_examples(tc.shots + tc.queries)
    if len(train_ts) == 0:
        raise FewgenError(f"{cfg.data.spec}: no meta-train task has {tc.shots + tc.queries} examples "
                          f"(shots {tc.shots} + queries {tc.queries}); lower train.shots or train.queries")
    meta = data_meta(ts)
    model = build_model(cfg.model, meta).to(tc.device)
    algo = get_algorithm(tc)
    extra = {k: torch.nn.Parameter(v.to(tc.device)) for k, v in algo.extra_params(model).items()}
    opt = torch.optim.Adam(list(model.parameters()) + list(extra.values()), lr=tc.lr, weight_decay=tc.weight_decay)
    augment = augmenter(ts) if cfg.data.augment else None
    info = {"data": meta, "algo": tc.algo, "splits": {k: len(v) for k, v in splits.items()}}

    start, best_val, bad_vals, elapsed = 0, None, 0, 0.0
    state = ckpt.load_train_state(out) if resume else None
    if resume and state is None:
        raise FewgenError(f"{out}: nothing to resume (no {ckpt.STATE_FILE})")
    if state is not None:
        model.load_state_dict(state["model"])
        for k, v in state.get("extra", {}).items():
            extra[k].data.copy_(v)
        opt.load_state_dict(state["optim"])
        start, best_val, bad_vals, elapsed = state["step"], state["best_val"], state["bad_vals"], state["elapsed"]
        best_val = None if best_val is None or math.isnan(best_val) else best_val
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.jsonl").unlink(missing_ok=True)
        (out / "resolved_config.json").write_text(json.dumps(config_to_dict(cfg), indent=2), encoding="utf-8")

    def save_model() -> None:
        ckpt.save(out, model, cfg, {**info, "step": step, "best_val": best_val},
                  {k: v.detach() for k, v in extra.items()})

    def save_state() -> None:
        ckpt.save_train_state(out, {
            "step": step, "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "extra": {k: v.detach().clone() for k, v in extra.items()}, "optim": opt.state_dict(),
            "best_val": float("nan") if best_val is None else best_val, "bad_vals": bad_vals, "elapsed": elapsed,
        })

    # SIGTERM behaves like Ctrl-C: the loop saves a resumable state and returns.
    old_handler = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    except ValueError:  # not the main thread
        old_handler = None
    step = start
    interrupted = False
    bar = tqdm(total=tc.steps, initial=start, disable=not progress, desc=f"train {tc.algo}", dynamic_ncols=True)
    t0, last_t, last_step = time.time() - elapsed, time.time(), start
    params = params_of(model)
    try:
        while step < tc.steps:
            ep = train_ts.sample_episode(tc.seed, step, tc.meta_batch, tc.shots, tc.queries, tc.min_shots)
            g = episode_generator(tc.seed + 1, step)
            if augment is not None:
                ep = augment(ep, g)
            model.train()
            loss = algo.meta_loss(model, params, extra, ep.to(tc.device), g)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise TrainingDiverged(f"loss became {loss_value} at step {step}; stopped. The last good "
                                       f"checkpoint in {out} is kept (try a lower train.lr)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(extra.values()), tc.grad_clip)
            opt.step()
            step += 1
            bar.update(1)
            if step % tc.log_every == 0 or step == tc.steps:
                now = time.time()
                rate = (step - last_step) / max(now - last_t, 1e-9)
                last_t, last_step = now, step
                bar.set_postfix(loss=f"{loss_value:.2f}", best_val=f"{best_val:.2f}" if best_val else "-")
                _log(out / "metrics.jsonl", {"step": step, "loss": loss_value, "steps_per_s": rate,
                                             "time": now - t0})
            if len(val_ts) and (step % tc.val_every == 0 or step == tc.steps):
                model.eval()
                v = validation_loss(model, algo, extra, val_ts, cfg)
                improved = best_val is None or v < best_val
                bad_vals = 0 if improved else bad_vals + 1
                if improved:
                    best_val = v
                    save_model()
                _log(out / "metrics.jsonl", {"step": step, "val_loss": v, "best_val": best_val})
                if tc.patience and bad_vals >= tc.patience:
                    bar.write(f"early stopping at step {step}: no meta-val improvement in {bad_vals} validations")
                    elapsed = time.time() - t0
                    save_state()
                    break
            out_of_time = tc.max_seconds > 0 and time.time() - t0 >= tc.max_seconds
            if out_of_time and len(val_ts) and step % tc.val_every:
                model.eval()  # a last validation, so the saved model is judged like the others
                v = validation_loss(model, algo, extra, val_ts, cfg)
                if best_val is None or v < best_val:
                    best_val = v
                    save_model()
                _log(out / "metrics.jsonl", {"step": step, "val_loss": v, "best_val": best_val})
            if step % tc.ckpt_every == 0 or step == tc.steps or out_of_time:
                elapsed = time.time() - t0
                if not len(val_ts):
                    save_model()
                save_state()
            if out_of_time:
                bar.write(f"time budget of {tc.max_seconds:.0f}s reached at step {step}")
                break
    except KeyboardInterrupt:
        interrupted = True
        elapsed = time.time() - t0
        save_state()
        if not (out / ckpt.MODEL_FILE).exists():
            save_model()
        bar.write(f"interrupted at step {step}; resumable state saved in {out} (resume with --resume)")
    finally:
        bar.close()
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
    if not (out / ckpt.MODEL_FILE).exists():
        save_model()
    return TrainResult(out, step, best_val, time.time() - t0, interrupted)
