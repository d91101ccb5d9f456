"""Training curves of a run: train and meta-validation loss against steps and against time.

Read from the run folder's ``metrics.jsonl`` (see :mod:`fewgen.training`): a training record
``{"step", "loss", "steps_per_s", "tasks_per_s", "time"}`` every ``train.log_every`` steps and a
validation record ``{"step", "val_loss", "best_val"}`` every ``train.val_every``. Validation
records carry no time; theirs is interpolated from the training records around them. A resumed
run may have logged a few steps twice (those after its last saved state): the later line wins.
Drawn with matplotlib's Agg canvas, so it needs no display and changes no global backend.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .errors import FewgenError

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "curves.png"


def read_metrics(run: str | Path) -> tuple[dict[int, dict], dict[int, dict]]:
    """The training and the validation records of a run, each by step (the last line per step)."""
    path = Path(run) / METRICS_FILE
    if not path.is_file():
        raise FewgenError(f"{run}: no {METRICS_FILE} (not a fewgen training run folder?)")
    train, val = {}, {}
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise FewgenError(f"{path}: cannot read ({e.strerror or e})") from None
    for i, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = _record(line.decode("utf-8"))
            step = int(r["step"])
        except UnicodeDecodeError as e:
            raise FewgenError(f"{path}: line {i} is not valid UTF-8 (byte {e.start})") from None
        except (ValueError, KeyError, TypeError, RecursionError):
            raise FewgenError(f"{path}: line {i} is not a metrics record") from None
        if "loss" in r:
            train[step] = r
        if "val_loss" in r:
            val[step] = r
    if not train:
        raise FewgenError(f"{path}: no training records yet (one comes every train.log_every steps)")
    return train, val


def _record(line: str) -> dict:
    """One metrics record, checked: a training record has a numeric loss and time, a validation
    record a numeric val_loss (a ValueError, KeyError or TypeError otherwise)."""
    r = json.loads(line)
    needed = (("loss", "time") if "loss" in r else ()) + (("val_loss",) if "val_loss" in r else ())
    for key in needed:
        float(r[key])
    return r


def plot_run(run: str | Path, out: str | Path | None = None) -> Path:
    """Write a PNG of ``run``'s train/val loss against steps (left) and time (right); return its path
    (default ``RUN/curves.png``)."""
    run = Path(run)
    train, val = read_metrics(run)
    steps = np.array(sorted(train))
    loss = np.array([train[s]["loss"] for s in steps])
    seconds = np.array([train[s]["time"] for s in steps])
    v_steps = np.array(sorted(val))
    v_loss = np.array([val[s]["val_loss"] for s in v_steps])
    v_seconds = np.interp(v_steps, steps, seconds)  # validation records carry no time
    minutes = seconds[-1] >= 180
    scale, unit = (60.0, "minutes") if minutes else (1.0, "seconds")

    fig = Figure(figsize=(11, 4), dpi=100)
    FigureCanvasAgg(fig)
    by_step, by_time = fig.subplots(1, 2, sharey=True)
    for ax, x, vx, label in ((by_step, steps, v_steps, "meta-training step"),
                             (by_time, seconds / scale, v_seconds / scale, f"training time ({unit})")):
        ax.plot(x, loss, lw=1, label="train (meta-batch)")
        if len(v_steps):
            ax.plot(vx, v_loss, "o-", ms=3, lw=1.5, label="meta-validation")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    by_step.set_ylabel("meta-loss (nats per query example)")
    by_step.legend()
    fig.suptitle(f"{run.name}: {_describe(run)}")
    fig.tight_layout()
    path = Path(out) if out is not None else run / PLOT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _describe(run: Path) -> str:
    """``image_vae, maml, 5-shot`` from the run's resolved config (or ``training curves``)."""
    try:
        cfg = json.loads((run / "resolved_config.json").read_text(encoding="utf-8"))
        return f"{cfg['model']['family']}, {cfg['train']['algo']}, {cfg['train']['shots']}-shot"
    except (OSError, ValueError, KeyError, TypeError):
        return "training curves"
