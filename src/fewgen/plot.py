"""fewgen's plots: a run's training curves, held-out NLL against fine-tuning steps, and the
benchmark's figures. All are drawn with matplotlib's Agg canvas, so they need no display and
change no global backend (no pyplot state).

Training curves (:func:`plot_run`): train and meta-validation loss against steps and against time,
read from the run folder's ``metrics.jsonl`` (see :mod:`fewgen.training`): a training record
``{"step", "loss", "steps_per_s", "tasks_per_s", "time"}`` every ``train.log_every`` steps and a
validation record ``{"step", "val_loss", "best_val"}`` every ``train.val_every``. Validation
records carry no time; theirs is interpolated from the training records around them. A resumed
run may have logged a few steps twice (those after its last saved state): the later line wins.

NLL against fine-tuning steps (:func:`plot_step_curves`): one panel per K, one curve per method,
from evaluation reports (``fewgen eval --plot``, the benchmark's ``nll_vs_steps.png``).
The benchmark (:func:`plot_bench`): NLL against shots and steps, and sample quality against
adaptation time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

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


def plot_step_curves(reports: Mapping[str, Mapping[str, Any]], path: str | Path) -> Path:
    """Write NLL (± 95% CI) against fine-tuning steps, one panel per K, one curve per method, from
    evaluation reports (:func:`fewgen.evaluate.evaluate`'s ``{"steps": {s: {K: ...}}}``) by
    method; return ``path`` (its suffix names the picture format)."""
    shots = sorted({int(k) for r in reports.values() for per_k in r["steps"].values() for k in per_k})
    fig = Figure(figsize=(4.5 * len(shots), 3.8), dpi=120)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(shots), squeeze=False)[0]
    for ax, k in zip(axes, shots):
        for m, r in reports.items():
            steps = sorted(int(s) for s in r["steps"] if str(k) in r["steps"][s])
            y = [r["steps"][str(s)][str(k)]["nll_nats"] for s in steps]
            ci = [r["steps"][str(s)][str(k)]["ci95"] for s in steps]
            ax.errorbar(steps, y, yerr=ci, marker="o", capsize=2, label=m)
        ax.set(xlabel="fine-tuning steps", ylabel="held-out NLL (nats)", title=f"K={k}")
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def plot_bench(results: Mapping[str, Any], out: str | Path) -> list[Path]:
    """The benchmark's pictures of ``results`` (:func:`fewgen.bench.run_bench`) in ``out``:
    ``nll.png`` (NLL against shots and against steps), ``nll_vs_steps.png``
    (:func:`plot_step_curves`) and, with image quality figures, ``quality_vs_time.png``."""
    out = Path(out)
    methods = results["methods"]
    paths = [_nll_figure(results, out / "nll.png"),
             plot_step_curves({m: e["nll"] for m, e in methods.items()}, out / "nll_vs_steps.png")]
    if any("quality" in e for e in methods.values()):
        paths.append(_quality_vs_time(methods, out / "quality_vs_time.png"))
    return paths


def _nll_figure(results: Mapping[str, Any], path: Path) -> Path:
    """NLL against shots K after the most steps (left), and against steps at the largest K (right)."""
    shots, steps = results["shots"], results["steps"]
    s_best, k_max = str(max(steps)), str(max(shots))
    fig = Figure(figsize=(11, 4), dpi=120)
    FigureCanvasAgg(fig)
    by_k, by_s = fig.subplots(1, 2)
    for m, e in results["methods"].items():
        nll = e["nll"]
        by_k.plot([0, *shots], [nll["unconditional"]["nll_nats"]] + [nll["steps"][s_best][str(k)]["nll_nats"]
                                                                     for k in shots], "o-", label=m)
        by_s.plot(steps, [nll["steps"][str(s)][k_max]["nll_nats"] for s in steps], "o-", label=m)
    by_k.set(xlabel="shots K", ylabel="held-out NLL (nats)", title=f"NLL vs shots (after {s_best} steps)")
    by_s.set(xlabel="adaptation steps", ylabel="held-out NLL (nats)", title=f"NLL vs steps (K={k_max})")
    by_k.legend(fontsize=8)
    return _save(fig, path)


def _quality_vs_time(methods: Mapping[str, Any], path: Path) -> Path:
    """FID (domain features) of every quality report against the method's adaptation seconds per task."""
    fig = Figure(figsize=(5.5, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for m, e in methods.items():
        for key, qr in e.get("quality", {}).items():
            s = key.split(":")[0]
            if qr.get("fid") is not None:
                ax.scatter(e["adapt_seconds_per_task"][s] + 1e-4, qr["fid"], label=f"{m} s={s} {qr.get('sampler', '')}")
    ax.set(xscale="log", xlabel="adaptation wall time per task (s)", ylabel="FID (domain features) ↓",
           title="quality vs adaptation cost")
    ax.legend(fontsize=7)
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    """Lay ``fig`` out and write it to ``path`` (the suffix names the format); return the path."""
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
