"""The meta-training loop: episodes, the meta-optimiser, validation, checkpoints, resume.

One run folder is one checkpoint (see :mod:`fewgen.checkpoint`): ``model.safetensors`` holds
the weights with the best meta-validation loss (early stopping on held-out *tasks*; with
``train.val_tasks = 0`` there is no validation and it holds the latest weights), and
``train_state.pt`` the latest weights and optimiser state for exact resume. ``metrics.jsonl``
gets one JSON line per log or validation event (``fewgen plot`` draws them; with
``train.tensorboard`` they are TensorBoard events in ``tensorboard/`` too). Episode ``i`` is a pure function of
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
from contextlib import contextmanager, nullcontext
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from functools import partial
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from . import checkpoint as ckpt
from . import distributed
from .config import Config, ModelConfig, TrainConfig, config_to_dict, replace, validate
from .ema import WeightAverage
from .errors import CheckpointError, ConfigError, FewgenError, TrainingDiverged
from .meta import get_algorithm, resolve_fine_tuning
from .models import (COUNTED_FAMILIES, GenerativeModel, build_model, family_config, model_for_data, params_of,
                     weight_average)
from .progress import Progress
from .tasks import augment
from .tasks.base import Episode, TaskSet, episode_generator, shard_generator
from .tasks.spec import load_tasks, splits_of


OPEN_ENDED_STEPS = 10**9  # train.steps this large with train.max_seconds: the budget ends the run


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


def validation_loss(model: GenerativeModel, algo, algo_params, val: TaskSet, cfg: Config,
                    device: torch.device | str | None = None) -> float:
    """Mean meta-loss over fixed meta-val episodes (full K-shot support, fixed noise)."""
    tc = cfg.train
    device = device if device is not None else distributed.resolve_device(tc.device)
    total, n = 0.0, 0
    batches = math.ceil(min(tc.val_tasks, len(val)) / tc.meta_batch)
    if batches == 0:
        raise FewgenError("no meta-validation tasks to validate on (train.val_tasks is 0 or the val split is empty)")
    params = params_of(model)
    for i in range(batches):
        ep = val.sample_episode(tc.seed + 10_007, i, tc.meta_batch, tc.shots, tc.queries, min_shots=tc.shots,
                                min_queries=1)
        # No outer graph: torch.func.grad still differentiates the inner loops (it ignores an
        # enclosing no_grad), so the value is the training objective's, at a fraction of the memory.
        with torch.no_grad():
            loss = algo.meta_loss(model, params, algo_params, ep.to(device), episode_generator(tc.seed + 20_011, i))
        total += float(loss)
        n += 1
    return total / n


def text_bytes(ep: Episode) -> int:
    """The UTF-8 bytes in a text episode's present shots and queries (ids below 256 are bytes)."""
    return int(((ep.support < 256) & ep.support_mask[..., None]).sum()
               + ((ep.query < 256) & ep.query_mask[..., None]).sum())


def too_few_examples(cfg: Config, train_split: TaskSet) -> str:
    """The message when no meta-train task has K + 1 examples, naming the setting that works."""
    spec, shots = cfg.data.spec, cfg.train.shots
    if len(train_split) == 0:
        return f"{spec}: the meta-train split has no tasks"
    most = int(train_split.counts.max())
    what = f"{spec}: no meta-train task has {shots + 1} examples (shots {shots} + 1 query; the most is {most})"
    if most < 2:
        return f"{what}; meta-learning needs at least 2 examples per task"
    k = most - 1
    if cfg.train.min_shots > k:
        return f"{what}; --set train.shots={k} --set train.min_shots={k} would work"
    return f"{what}; train.shots={k} would work (--shots {k}, or --set train.shots={k})"


def _log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


TENSORBOARD_DIR = "tensorboard"
# metrics.jsonl field -> TensorBoard tag: train and validation loss share one chart.
TENSORBOARD_TAGS = {"loss": "loss/train", "val_loss": "loss/val", "best_val": "loss/best_val",
                    "steps_per_s": "speed/steps_per_s", "tasks_per_s": "speed/tasks_per_s"}


def summary_writer() -> type:
    """TensorBoard's ``SummaryWriter`` class (through torch), or a one-line error saying what to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise FewgenError("train.tensorboard needs the tensorboard package: pip install 'fewgen[tensorboard]'") from None
    return SummaryWriter


def compiled(fn: Callable, build: Callable[[], Callable] | None = None) -> Callable:
    """``build()`` (by default ``torch.compile(fn)``), a compiled function that computes what
    ``fn`` does; if building it or its first call fails, warn once and run ``fn`` eagerly.

    The failed attempt may have drawn from a generator argument; its state is restored, so
    the fallback computes exactly what eager mode would have."""
    def fallback(e: Exception) -> None:
        distributed.warn_main(f"torch.compile failed ({type(e).__name__}: {(str(e) or '?').splitlines()[0][:200]}); "
                              "running the meta-loss eagerly")

    try:
        state = {"fn": build() if build is not None else torch.compile(fn), "tried": False}
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


RUN_CONFIG = "resolved_config.json"  # the whole config of a run, what --resume continues with


def run_config(out: str | Path) -> Config:
    """The config a run folder was started with (``fewgen train --resume``); a one-line
    CheckpointError naming the file when it is missing or damaged."""
    from .config import config_from_dict

    f = Path(out) / RUN_CONFIG
    if not f.is_file():
        raise CheckpointError(f"{out}: nothing to resume (no {RUN_CONFIG})")
    try:
        return config_from_dict(json.loads(f.read_bytes().decode("utf-8")))
    except (ValueError, TypeError, AttributeError, RecursionError) as e:  # JSON, UTF-8, not a config
        raise CheckpointError(f"{f}: damaged ({type(e).__name__}: {str(e)[:80]})") from None
    except OSError as e:
        raise CheckpointError(f"{f}: cannot read ({e.strerror or e})") from None
    except FewgenError as e:
        raise CheckpointError(f"{f}: {e}") from None


def write_run_config(out: Path, cfg: Config) -> None:
    """Store the whole config a run starts with (what :func:`run_config` reads back)."""
    (out / RUN_CONFIG).write_text(json.dumps(config_to_dict(cfg), indent=2), encoding="utf-8")


def train(cfg: Config, out: str | Path, resume: bool = False, progress: bool = True,
          tasks: TaskSet | None = None, callback: StepCallback | None = None) -> TrainResult:
    """Meta-train ``cfg.model.family`` with ``cfg.train.algo`` on ``cfg.data.spec``; write a
    checkpoint folder at ``out``. With ``resume`` an interrupted run continues exactly.
    ``callback(run)`` is called after every step (see :meth:`Run.call_back`; families fit by
    counting take no steps).

    Under ``torchrun`` every process calls this; they join one process group for the run."""
    validate(cfg)  # e.g. a config changed with config.replace, which does not validate
    if cfg.model.family != ModelConfig.family:  # the default family's stand-in depends on the data (model_for_data)
        family_config(cfg.model)  # a bad model.extra fails here, before any data loads
    device = distributed.resolve_device(cfg.train.device)
    tasks = tasks if tasks is not None else load_tasks(cfg.data.spec, cfg.data)
    cfg = dataclasses.replace(cfg, model=model_for_data(cfg.model, tasks.modality))  # words -> a text family
    if tasks.modality == "image":  # the run stores the size its images have (data.image_size 0: the source's)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_size=tasks.example_shape[-1]))
    created = distributed.setup(device)
    try:
        if cfg.model.family in COUNTED_FAMILIES:
            return fit_by_counting(cfg, Path(out), tasks, device, progress)
        run = Run(cfg, Path(out), tasks, device)
        run.restore(resume)
        return run.train(progress, callback)
    finally:
        distributed.teardown(created)


def fit_by_counting(cfg: Config, out: Path, ts: TaskSet, device: torch.device,
                    progress: bool) -> TrainResult:
    """Train a family that is fit by counting (``models.COUNTED_FAMILIES``, e.g. ``text_ngram``):
    its ``fit_counts`` reads every meta-train string and chooses its mixing weights on the
    meta-val tasks, in seconds, instead of gradient steps. The checkpoint is written as after
    gradient training (step 0; there is no resume state: a rerun counts again)."""
    if cfg.train.algo != "amortized":
        raise ConfigError(f"model.family={cfg.model.family} is fit by counting and reads the support directly; "
                          f"train it with --algo amortized (the default), not {cfg.train.algo}")
    splits = splits_of(ts, cfg.data)
    meta = data_meta(ts)
    model = build_model(cfg.model, meta).to(device)
    t0 = time.time()
    fit = model.fit_counts(*([s.examples(i) for i in range(len(s))] for s in (splits["train"], splits["val"])),
                           seed=cfg.train.seed)
    seconds = time.time() - t0
    if distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        write_run_config(out, cfg)
        record = json.dumps({"step": 0, "fit": fit, "time": seconds})
        (out / "metrics.jsonl").write_text(record + "\n", encoding="utf-8")
        ckpt.save(out, model, cfg, {"data": meta, "algo": "amortized", "splits": {k: len(v) for k, v in splits.items()},
                                    "step": 0, "best_val": None, "fit": fit})
        if progress:
            print(f"{model.family}: counted {fit['train_strings']} strings of {len(splits['train'])} meta-train "
                  f"tasks; lambda_K's (a, kappa, b) = {[round(v, 3) for v in fit['mix']]} chosen on {fit['mix_chosen_on']}",
                  flush=True)
    distributed.barrier()
    return TrainResult(out, 0, None, seconds)


# Called after every training step with the Run; True stops the run there (see Run.call_back).
StepCallback = Callable[["Run"], "bool | None"]


@dataclass
class RunState:
    """Where a run stands, besides its weights and optimiser (all of it goes into ``train_state.pt``)."""

    step: int = 0  # meta-gradient steps taken
    best_val: float | None = None  # the best meta-validation loss so far
    bad_vals: int = 0  # validations in a row without improvement (early stopping)
    elapsed: float = 0.0  # training seconds up to the last save (a resumed run's clock goes on)


def resolve_ema(tc: TrainConfig, family: str) -> TrainConfig:
    """``tc`` with ``ema`` "auto" made concrete for model ``family``: the decay its class was
    measured to sample better with (:func:`fewgen.models.weight_average`; the diffusion model's
    0.999, 0 elsewhere): the stored config says which."""
    return dataclasses.replace(tc, ema=weight_average(family)) if tc.ema == "auto" else tc


class Run:
    """One meta-training run, in one process: data, model, algorithm, optimiser and :class:`RunState`.

    :meth:`restore` continues a saved state (or starts the run folder), :meth:`train` loops
    :meth:`step` and :meth:`after_step` (logging, validation, checkpoints, stops) to the end."""

    def __init__(self, cfg: Config, out: Path, ts: TaskSet, device: torch.device) -> None:
        # "auto" fine-tuning options become the algorithm's measured recipe: the stored config says which
        cfg = dataclasses.replace(cfg, train=resolve_ema(resolve_fine_tuning(cfg.train, ts.modality), cfg.model.family))
        tc = self.tc = cfg.train
        self.cfg, self.out, self.device = cfg, out, device
        self.main, self.world = distributed.is_main(), distributed.world_size()
        if tc.tensorboard and self.main:
            summary_writer()  # a missing package fails before any work
        torch.manual_seed(tc.seed)
        # "default" becomes the modality's transforms: the run's stored config says what was used
        cfg = self.cfg = replace(cfg, data={"task_augment": augment.resolve(cfg.data.task_augment, ts.modality)})
        splits = splits_of(ts, cfg.data)
        # A task needs K + 1 examples (K shots, one query); smaller ones get fewer than train.queries queries.
        self.train_ts, self.val_ts = (splits[s].with_min_examples(tc.shots + 1) for s in ("train", "val"))
        # train.val_tasks = 0 (or no usable val task): no validation; the checkpoint is the latest weights
        self.validates = tc.val_tasks > 0 and len(self.val_ts) > 0
        if len(self.train_ts) == 0:
            raise FewgenError(too_few_examples(cfg, splits["train"]))
        meta = data_meta(ts)
        self.model = build_model(cfg.model, meta).to(device)
        self.params = params_of(self.model)  # the live parameters: restoring copies into them
        self.algo = get_algorithm(tc)
        self.algo_params = {k: torch.nn.Parameter(v.to(device)) for k, v in self.algo.algo_params(self.model).items()}
        self.meta_params = list(self.model.parameters()) + list(self.algo_params.values())
        self.opt = torch.optim.Adam(self.meta_params, lr=tc.lr, weight_decay=tc.weight_decay)
        named = {**{f"model.{k}": v for k, v in self.params.items()}, **{f"algo.{k}": v for k, v in self.algo_params.items()}}
        self.ema = WeightAverage(named, tc.ema) if tc.ema > 0 else None  # train.ema: validate and save the average
        # The one place that compiles: the algorithm says what (its hot part), compiled() falls
        # back to eager for good if that fails, forward or backward, on the first step.
        eager = partial(self.gradients, self.algo.meta_loss)
        self.loss_and_grads = eager if not tc.compile else \
            compiled(eager, lambda: partial(self.gradients, self.algo.compiled_meta_loss()))
        self.bf16 = tc.precision == "bf16"
        if self.bf16 and device.type == "cpu":
            distributed.warn_main("train.precision bf16 on CPU: autocast works but is usually slower than fp32")
        if self.world > 1:
            distributed.shard(tc.meta_batch)  # fail early (every rank) when meta_batch < world size
        self.augment = augment.task_augmenter(cfg.data, ts.modality)  # data.task_augment
        self.modality = ts.modality
        self.info = {"data": meta, "algo": tc.algo, "splits": {k: len(v) for k, v in splits.items()}}
        self.state = RunState()
        self.tensorboard = None  # rank 0's SummaryWriter with train.tensorboard (restore opens it)
        self.t0 = self.clock()  # the run's budget clock (train.clock): it started elapsed seconds ago (train sets it)
        self.last_log = (time.time(), 0)  # (time, step) of the last training record
        self.note = lambda _: None  # messages for the user (train sets it)

    def clock(self) -> float:
        """Seconds on the budget clock (``train.clock``): wall time, or this process's CPU time
        (all its threads), which a loaded machine does not stretch: runs compared at an equal
        ``max_seconds`` on the ``cpu`` clock got the same CPU, whatever else ran beside them."""
        return time.process_time() if self.tc.clock == "cpu" else time.time()

    def restore(self, resume: bool) -> None:
        """Continue from the saved ``train_state.pt`` (``resume``), or start a fresh run folder."""
        out = self.out
        saved = ckpt.load_train_state(out) if resume and self.main else None
        if resume and self.world > 1:  # rank 0 reads it and sends it: machines need not share a file system
            saved = distributed.broadcast_object(saved)
        if resume and saved is None:
            raise FewgenError(f"{out}: nothing to resume (no {ckpt.STATE_FILE})")
        if saved is not None:
            try:
                self.model.load_state_dict(saved["model"])
                for k, v in saved.get("extra", {}).items():
                    self.algo_params[k].data.copy_(v)
                self.opt.load_state_dict(saved["optim"])
                if self.ema is not None:
                    self.ema.load_state_dict(saved["ema"])
                best = saved["best_val"]
                self.state = RunState(saved["step"], None if best is None or math.isnan(best) else best,
                                      saved["bad_vals"], saved["elapsed"])
            except (RuntimeError, KeyError, ValueError, TypeError) as e:
                raise CheckpointError(f"{out / ckpt.STATE_FILE}: does not match this run's model "
                                      f"({str(e).splitlines()[0][:120]})") from None
        elif self.main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "metrics.jsonl").unlink(missing_ok=True)
            (out / ckpt.STATE_FILE).unlink(missing_ok=True)  # an overwritten run's resume state is not this one's
            for old in (out / TENSORBOARD_DIR).glob("events.out.tfevents.*"):  # a new run's curves only
                old.unlink()
            write_run_config(out, self.cfg)
        distributed.broadcast_(self.meta_params)  # every rank starts from rank 0's weights (a no-op alone)
        if self.tc.tensorboard and self.main:  # a resumed run drops the events logged after its saved state
            self.tensorboard = summary_writer()(str(out / TENSORBOARD_DIR),
                                                purge_step=None if saved is None else self.state.step + 1)

    def train(self, progress: bool, callback: StepCallback | None = None) -> TrainResult:
        """Step until ``train.steps``, the time budget, early stopping, a signal or ``callback``
        (:meth:`call_back`, after every step); save; report."""
        tc, s = self.tc, self.state
        interrupted = False
        # A budget with no step count (fewgen train --max-seconds alone) has no step total to show.
        total = None if tc.max_seconds > 0 and tc.steps >= OPEN_ENDED_STEPS else tc.steps
        self.t0, self.last_log = self.clock() - s.elapsed, (time.time(), s.step)
        # With a time budget the ETA is the budget's when it ends the run first (on train.clock).
        budget = (lambda: tc.max_seconds - (self.clock() - self.t0)) if tc.max_seconds > 0 else None
        bar = Progress(total, s.step, f"train {tc.algo}", enabled=progress and self.main, budget=budget,
                       budget_clock=tc.clock)
        self.note = bar.write if self.main else (lambda _: None)
        if progress:
            self.note(f"device: {device_name(self.device, self.tc.device)}")
        with stop_signals() as signalled:
            try:
                while s.step < tc.steps:
                    loss, out_of_time, stop, num_bytes = self.step(signalled)
                    bar.update(num_bytes)
                    if s.step % tc.log_every == 0 or s.step == tc.steps:
                        bar.show(loss=f"{loss:.2f}", best_val="-" if s.best_val is None else f"{s.best_val:.2f}")
                        self.log_step(loss)
                    if self.after_step(out_of_time):
                        break
                    if callback is not None and self.call_back(callback):
                        break
                    if stop:
                        raise KeyboardInterrupt
            except KeyboardInterrupt:
                interrupted = True
                self.save_state()
                if self.main and not (self.out / ckpt.MODEL_FILE).exists():
                    self.save_model()
                self.note(f"interrupted at step {s.step}; resumable state saved in {self.out} (resume with --resume)")
            finally:
                bar.close()
                if self.tensorboard is not None:
                    self.tensorboard.close()
        if self.main and not (self.out / ckpt.MODEL_FILE).exists():
            self.save_model()
        distributed.barrier()  # when train returns on any rank, the checkpoint is complete
        return TrainResult(self.out, s.step, s.best_val, self.clock() - self.t0, interrupted)

    def step(self, signalled: list[int]) -> tuple[float, bool, bool, int]:
        """One meta-gradient step. Returns the loss and whether to stop for time or for a signal
        (``signalled`` not empty), as every rank agrees (one all-reduce carries the gradients,
        the loss and both flags), and the bytes of text the meta-batch held (0 for other data)."""
        tc, step = self.tc, self.state.step
        # The global meta-batch, identical on every rank; with several processes each keeps
        # its tasks r::world and the noise generator knows them (noise is sliced, not redrawn).
        ep = self.train_ts.sample_episode(tc.seed, step, tc.meta_batch, tc.shots, tc.queries, tc.min_shots,
                                          min_queries=1)
        if self.world > 1:
            mine = distributed.shard(ep.num_tasks)
            g = shard_generator(tc.seed + 1, step, mine, ep.num_tasks)
        else:
            g = episode_generator(tc.seed + 1, step)
        if self.augment is not None:
            ep = self.augment(ep, g)
        num_bytes = text_bytes(ep) if self.modality == "text" else 0
        if self.world > 1:
            ep = distributed.shard_episode(ep, mine)
        self.model.train()
        # this shard's share of the global mean; the SUM-all-reduce adds the shares
        loss = self.loss_and_grads(ep.to(self.device), g, len(mine) / tc.meta_batch if self.world > 1 else None)
        out_of_time = tc.max_seconds > 0 and self.clock() - self.t0 >= tc.max_seconds
        loss_value, out_of_time, stop = distributed.all_reduce_grads(
            self.meta_params, [loss.detach(), out_of_time, len(signalled) > 0])
        if not math.isfinite(loss_value):
            raise TrainingDiverged(f"loss became {loss_value} at step {step}; stopped. The last good "
                                   f"checkpoint in {self.out} is kept (try a lower train.lr)")
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.meta_params, tc.grad_clip)
        self.opt.step()
        self.state.step += 1
        if self.ema is not None:
            self.ema.update(self.state.step)
        return loss_value, out_of_time > 0, stop > 0, num_bytes

    def gradients(self, meta_loss: Callable[..., Tensor], ep: Episode, g: torch.Generator,
                  share: float | None) -> Tensor:
        """The meta-loss of ``ep`` (times ``share``, a shard's share of the meta-batch), with its
        gradients in the meta-parameters' ``.grad``."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = meta_loss(self.model, self.params, self.algo_params, ep, g)
        if share is not None:
            loss = loss * share
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        return loss

    def after_step(self, out_of_time: bool) -> bool:
        """Validate, stop early, save, as configured after a step. True when the run ends here."""
        tc, s, has_val = self.tc, self.state, self.validates
        if has_val and (s.step % tc.val_every == 0 or s.step == tc.steps):
            if self.main:  # rank 0 validates; the others wait at the next collective
                s.bad_vals = 0 if self.validate() else s.bad_vals + 1
            if tc.patience and distributed.broadcast_flag(bool(self.main and s.bad_vals >= tc.patience)):
                self.note(f"early stopping at step {s.step}: no meta-val improvement in {s.bad_vals} validations")
                self.save_state()
                return True
        if self.main and out_of_time and has_val and s.step % tc.val_every:
            self.validate()  # a last validation, so the saved model is judged like the others
        if s.step % tc.ckpt_every == 0 or s.step == tc.steps or out_of_time:
            if not has_val:
                self.save_model()
            self.save_state()
        if out_of_time:
            self.note(f"time budget of {tc.max_seconds:.0f}s reached at step {s.step}")
        return out_of_time

    def call_back(self, callback: StepCallback) -> bool:
        """Call ``callback(self)`` after a step, e.g. to evaluate ``self.model`` on held-out tasks
        (inside ``with self.averaged():`` to see the weights validation sees). The run's clock
        stops meanwhile: the callback's time counts neither toward ``train.max_seconds`` nor in
        the logged times and speeds (``self.clock() - self.t0`` stays the training seconds). A
        true result ends the run at this step, with a resumable state saved, as a time budget
        would. The callback must leave the weights alone; under ``torchrun`` every rank calls
        it and all must return the same."""
        started, wall = self.clock(), time.time()
        stop = bool(callback(self))
        self.t0 += self.clock() - started
        self.last_log = (self.last_log[0] + time.time() - wall, self.last_log[1])
        if stop:
            self.save_state()
        return stop

    def validate(self) -> bool:
        """Meta-validate; keep the weights if they are the best so far. True if improved."""
        s = self.state
        self.model.eval()
        with self.averaged():
            v = validation_loss(self.model, self.algo, self.algo_params, self.val_ts, self.cfg, self.device)
        if not math.isfinite(v):
            raise TrainingDiverged(f"meta-validation loss became {v} at step {s.step}; stopped. "
                                   f"The last good checkpoint in {self.out} is kept")
        improved = s.best_val is None or v < s.best_val
        if improved:
            s.best_val = v
            self.save_model()
        self.log({"step": s.step, "val_loss": v, "best_val": s.best_val})
        return improved

    def log_step(self, loss: float) -> None:
        """A training record: the loss and the speed since the last one."""
        now, (last_t, last_step) = time.time(), self.last_log
        rate = (self.state.step - last_step) / max(now - last_t, 1e-9)
        self.last_log = (now, self.state.step)
        self.log({"step": self.state.step, "loss": loss, "steps_per_s": rate,
                  "tasks_per_s": rate * self.tc.meta_batch, "time": self.clock() - self.t0})

    def log(self, record: dict[str, Any]) -> None:
        """One line of ``metrics.jsonl`` (rank 0), and its scalars in TensorBoard (``train.tensorboard``)."""
        if self.main:
            _log(self.out / "metrics.jsonl", record)
        if self.tensorboard is not None:
            for key, tag in TENSORBOARD_TAGS.items():
                if record.get(key) is not None:
                    self.tensorboard.add_scalar(tag, record[key], record["step"])

    def averaged(self):
        """A context in which the live weights are the moving average (``train.ema``), if any."""
        return self.ema.swapped_in() if self.ema is not None else nullcontext()

    def save_model(self) -> None:
        """The checkpoint (rank 0): the current weights (their average with ``train.ema``),
        judged best when validation says so."""
        if not self.main:
            return
        with self.averaged():
            ckpt.save(self.out, self.model, self.cfg, {**self.info, "step": self.state.step,
                                                       "best_val": self.state.best_val},
                      {k: v.detach() for k, v in self.algo_params.items()})

    def save_state(self) -> None:
        """The resume state (rank 0): latest weights, optimiser and :class:`RunState`."""
        s = self.state
        s.elapsed = self.clock() - self.t0
        if not self.main:
            return
        ckpt.save_train_state(self.out, {
            "step": s.step, "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "extra": {k: v.detach().clone() for k, v in self.algo_params.items()}, "optim": self.opt.state_dict(),
            "best_val": float("nan") if s.best_val is None else s.best_val, "bad_vals": s.bad_vals,
            "elapsed": s.elapsed, **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
        })


def device_name(device: torch.device, asked: str) -> str:
    """The device a run trains on, in words: ``cuda:0 (NVIDIA H200)``, ``cpu (no CUDA GPU visible)``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} (no CUDA GPU visible)" if asked.strip().lower() == "auto" else str(device)


@contextmanager
def stop_signals() -> Iterator[list[int]]:
    """Catch SIGTERM and SIGINT for the block: the signals received, in a list the loop reads.

    A signal never lands mid-update: the step finishes, then the state is saved (SIGTERM, and
    Ctrl-C with several processes, which must all stop at the same step). A second signal
    stops a stuck run at once."""
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt

    old = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, on_signal)
    except ValueError:  # not the main thread
        pass
    try:
        yield received
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
