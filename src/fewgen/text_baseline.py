"""The classical baseline that every text evaluation reports beside the model.

A trigram of all meta-train text mixed with a trigram of the support, the mixture weight chosen
on the meta-validation tasks: :mod:`fewgen.models.text_ngram` at order 3, fit by counting on the
*evaluated checkpoint's own* meta-train split exactly as ``fewgen train --set
model.family=text_ngram --set model.extra={order=3}`` would fit it (it calls
:func:`fewgen.training.train`, into a temporary folder). It needs no gradient step and seconds
of CPU, so a neural model's figures are never read without the bar it has to clear.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Mapping

from .checkpoint import Checkpoint, load
from .config import Config, EvalConfig, replace
from .models import TEXT_BASELINE
from .tasks.base import TaskSet

ORDER = 3
NAME = f"trigram + support trigram ({TEXT_BASELINE} order {ORDER})"


def baseline_config(cfg: Config, order: int = ORDER) -> Config:
    """The training config of the baseline of a checkpoint trained with ``cfg``: its data and
    splits, the n-gram family of ``order`` (amortized: it reads the support), on the CPU."""
    return replace(cfg, model={"family": TEXT_BASELINE, "extra": {"order": order}},
                   train={"algo": "amortized", "device": "cpu"})


def fit_text_baseline(cfg: Config, order: int = ORDER) -> Checkpoint:
    """The baseline of a checkpoint trained with ``cfg``, fit by counting (module docstring)."""
    from .training import train

    with tempfile.TemporaryDirectory(prefix="fewgen-baseline-") as tmp:
        train(baseline_config(cfg, order), Path(tmp) / "baseline", progress=False)
        return load(Path(tmp) / "baseline")  # everything is read into memory


def evaluate_text_baseline(ck: Checkpoint, ts: TaskSet, ecfg: EvalConfig, scripts: Mapping[str, str],
                           samples: int = 0, fidelity: bool = False, training_strings: set[str] | None = None,
                           progress: bool = False) -> dict[str, Any]:
    """The baseline ``ck`` (:func:`fit_text_baseline`) on the held-out tasks ``ts`` with the same
    episodes, shots and seed as the model (``ecfg``), without fine-tuning steps (the counts are
    the fit): ``{"name", "unconditional", "shots", "steps": {"0": ...}}`` with bits per character
    and ``by_script`` per entry, and with ``samples`` > 0 a ``"samples"`` entry
    (:func:`fewgen.evaluate.text_sample_report` at K = max(shots): novelty, validity, support
    sensitivity and, with ``fidelity``, text fidelity)."""
    from .adaptation import adapter_for_checkpoint
    from .evaluate import add_script_groups, evaluate, text_sample_report
    from .metrics.text import bits_per_char_examples

    ecfg = dataclasses.replace(ecfg, steps=(0,))
    adapt_fn = adapter_for_checkpoint(ck, algo="amortized", seed=ecfg.seed)
    report = add_script_groups(evaluate(adapt_fn, ts, ecfg, progress, bits_per_char_examples), scripts)
    out: dict[str, Any] = {"name": NAME, "fit": ck.info.get("fit", {}), **report}
    if samples > 0:
        out["samples"] = text_sample_report(adapt_fn, ts, training_strings or set(), max(ecfg.shots), 0, samples,
                                            ecfg.seed, ecfg.batch_tasks, fidelity=fidelity, scripts=scripts)
    return out
