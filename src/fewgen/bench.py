"""The few-shot benchmark: every method under the same budget, on the same held-out tasks and
support sets, against the baselines. It proves or refutes the claim that meta-learning
adapts to a new distribution from few samples better and more cheaply than training normally.

For every method: meta-train (or take a given checkpoint), then on the held-out split report
NLL for every K x adaptation steps (the same seeded episodes for every method), the
adaptation wall time, and for images the sample-quality metrics of :mod:`fewgen.image_quality`
(FID/KID on a domain feature network, fidelity, diversity, memorisation, support sensitivity) on the same
support sets, beside the values real held-out data gets under the same protocol. Writes
``results.json``, ``results.md``, PNG plots and a sample grid per method.
Paired differences over the same tasks (each method after s steps minus itself at 0 steps, and
minus *transfer* at the same K and s) come with their 95% CIs; ``nll_vs_steps.png`` plots NLL
against fine-tuning steps, one panel per K.

Text data adds a classical baseline, ``ngram`` (:mod:`fewgen.models.text_ngram`: a byte n-gram
counted on the meta-train tasks mixed with one fit on the support), and for every method the
text sample figures at K = max(shots): fidelity (:mod:`fewgen.metrics.text_fidelity`, with the
real strings' ceiling and chance), novelty, validity and support sensitivity
(:mod:`fewgen.metrics.support_sensitivity`), and bits per character and fidelity per script
(:mod:`fewgen.metrics.text_groups`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from .adaptation import adapter_for_checkpoint, fine_tuning, steps_note
from .checkpoint import Checkpoint, check_data, load
from .config import Config, replace
from .errors import FewgenError
from .evaluate import add_script_groups, check_shots, evaluate, training_strings
from .image_quality import QualitySet, quality_reports, quality_set
from .meta import ALGORITHMS, UNTRAINED
from .models import TEXT_BASELINE, model_for_data
from .metrics.nll import paired_difference
from .metrics.text_groups import task_scripts
from .tasks.base import TaskSet
from .tasks.spec import load_tasks, splits_of
from .training import train

METHODS = ("amortized", "maml", "fomaml", "reptile", "hybrid", "transfer", "scratch", "ngram")
TEXT_ONLY = ("ngram",)  # run on text data only (skipped, with a note, for images)


@dataclass
class BenchConfig:
    """What to compare and under which budget."""

    data: str
    eval_data: str = ""  # cross-domain: evaluate on another source ("" = the same)
    methods: tuple[str, ...] = METHODS
    shots: tuple[int, ...] = (1, 5, 10)
    steps: tuple[int, ...] = (0, 1, 5, 10)
    train_steps: int = 1500  # the same meta-training budget for every method
    train_seconds: float = 0.0  # optional time budget per method (0 = none)
    eval_tasks: int = 40
    importance_samples: int = 50
    quality_tasks: int = 12  # held-out tasks for the sample-quality metrics
    quality_samples: int = 32
    quality_shots: int = 5
    feature_steps: int = 300  # episodes to train the domain feature network
    seed: int = 0
    ckpts: dict[str, str] = field(default_factory=dict)  # method -> existing checkpoint
    base: Config = field(default_factory=Config)  # model / training settings shared by all methods


def quick(cfg: BenchConfig) -> BenchConfig:
    """The ``--quick`` budget: finishes within about 10 minutes on 2 CPU cores."""
    cfg.train_steps = min(cfg.train_steps, 150)
    cfg.train_seconds = cfg.train_seconds or 45.0
    cfg.shots = tuple(k for k in cfg.shots if k <= 5) or (1,)
    cfg.steps = tuple(s for s in cfg.steps if s <= 10) or (0,)
    cfg.eval_tasks, cfg.importance_samples = min(cfg.eval_tasks, 12), min(cfg.importance_samples, 10)
    cfg.quality_tasks, cfg.quality_samples = min(cfg.quality_tasks, 8), min(cfg.quality_samples, 16)
    cfg.base = replace(cfg.base, model={"hidden": 16, "latent": 16, "context": 64},
                       train={"meta_batch": 8, "val_every": 50, "val_tasks": 16})
    return cfg


def method_config(cfg: BenchConfig, method: str) -> Config:
    """The training config of one method: the shared base with the method's algorithm."""
    algo = {"scratch": "transfer", "ngram": "amortized"}.get(method, method)  # scratch borrows the architecture
    base = replace(cfg.base, model={"family": TEXT_BASELINE, "extra": {}}) if method == "ngram" else cfg.base
    return replace(base, data={"spec": cfg.data},
                   train={"algo": algo, "steps": cfg.train_steps, "max_seconds": cfg.train_seconds,
                          "seed": cfg.seed})


def _checkpoint(cfg: BenchConfig, method: str, out: Path, tasks: TaskSet, progress: bool,
                trained: dict[str, Checkpoint]) -> tuple[Checkpoint, float]:
    """A method's checkpoint and its meta-training time (0 when given or untrained)."""
    if method in cfg.ckpts:
        return load(cfg.ckpts[method]), 0.0
    if method in UNTRAINED:
        if trained:  # scratch: the same architecture, re-initialised by the adapter
            return next(iter(trained.values())), 0.0
        steps_cfg = replace(method_config(cfg, method), train={"steps": 1, "val_every": 10**9})
        train(steps_cfg, out / method, progress=False, tasks=tasks)
        return load(out / method), 0.0
    t0 = time.time()
    train(method_config(cfg, method), out / method, progress=progress, tasks=tasks)
    return load(out / method), time.time() - t0


def adaptation_seconds(adapt_fn, support: torch.Tensor, steps: Sequence[int]) -> dict[str, float]:
    """Wall time to adapt to one batch of tasks, per task, for every step count."""
    mask = torch.ones(support.shape[:2], dtype=torch.bool)
    out = {}
    for s in steps:
        t0 = time.perf_counter()
        adapt_fn(support, mask, s)
        out[str(s)] = (time.perf_counter() - t0) / support.shape[0]
    return out


def _runnable(methods: Sequence[str], modality: str, progress: bool) -> list[str]:
    """The methods that run on data of ``modality``: text baselines are skipped (with a note) on
    other data; none left is an error."""
    keep = [m for m in methods if m not in TEXT_ONLY or modality == "text"]
    if not keep:
        raise FewgenError(f"--methods {','.join(methods)}: nothing to run on {modality} data "
                          f"({', '.join(TEXT_ONLY)}: text baselines)")
    if progress and len(keep) < len(methods):
        print(f"skipping {', '.join(m for m in methods if m not in keep)}: text baselines, the data is {modality}",
              flush=True)
    return keep


def run_bench(cfg: BenchConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Run the benchmark; write results.json, results.md, plots and sample grids into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    unknown = [m for m in cfg.methods if m not in (*ALGORITHMS, *UNTRAINED, *TEXT_ONLY, *cfg.ckpts)]
    if unknown:
        raise FewgenError(f"unknown method '{unknown[0]}'; valid: {', '.join(METHODS)}, or a name given by --ckpt NAME=PATH")
    base_data = replace(cfg.base, data={"spec": cfg.data}).data
    tasks = load_tasks(cfg.data, base_data)
    methods = _runnable(cfg.methods, tasks.modality, progress)
    cfg.base = dataclasses.replace(cfg.base, model=model_for_data(cfg.base.model, tasks.modality))  # as train does
    eval_spec = cfg.eval_data or cfg.data
    held_out = _held_out(cfg, tasks, base_data)
    for name, path in cfg.ckpts.items():  # a given checkpoint that cannot read the data: said before any training
        check_data(load(path), held_out.modality, held_out.example_shape, eval_spec, f"--ckpt {name}={path}")
    ecfg = replace(cfg.base, eval={"shots": cfg.shots, "steps": cfg.steps, "max_tasks": cfg.eval_tasks,
                                   "importance_samples": cfg.importance_samples, "seed": cfg.seed}).eval
    quality = quality_set(splits_of(tasks, base_data)["train"], held_out, cfg.quality_shots, cfg.quality_tasks,
                          cfg.seed, out / "feature_net", cfg.feature_steps, progress)
    seen = training_strings(base_data, tasks) if tasks.modality == "text" else set()
    scripts = task_scripts(held_out) if held_out.modality == "text" else {}  # once per task, for every method

    results: dict[str, Any] = {"data": cfg.data, "eval_data": eval_spec, "held_out_tasks": len(held_out),
                               "shots": list(cfg.shots), "steps": list(cfg.steps), "train_steps": cfg.train_steps,
                               "train_seconds_budget": cfg.train_seconds, "methods": {}}
    trained: dict[str, Checkpoint] = {}
    per_task: dict[str, dict[str, dict[str, dict[str, float]]]] = {}  # method -> steps -> K -> task -> NLL
    for i, method in enumerate(methods):
        if progress:
            print(f"[{i + 1}/{len(methods)}] {method}: meta-training", flush=True)
        ck, train_s = _checkpoint(cfg, method, out / "ckpt", tasks, progress, trained)
        if method not in (*UNTRAINED, *TEXT_ONLY) and method not in cfg.ckpts:
            trained[method] = ck
        adapt_fn = adapter_for_checkpoint(ck, algo=_algo_of(cfg, method, ck), seed=cfg.seed)
        if progress:
            print(f"[{i + 1}/{len(methods)}] {method}: evaluating on {len(held_out)} held-out tasks", flush=True)
        entry, per_task[method] = _evaluate_method(cfg, method, ck, adapt_fn, held_out, ecfg, quality, seen, out,
                                                   scripts)
        entry = {"train_seconds": round(train_s, 1), **entry}
        results["methods"][method] = entry
        results["paired"] = paired_comparisons(per_task)
        (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    (out / "results.md").write_text(results_markdown(results), encoding="utf-8")
    from .plot import plot_bench  # matplotlib: only once there is something to draw

    plot_bench(results, out)
    return results


def _algo_of(cfg: BenchConfig, method: str, ck: Checkpoint) -> str:
    """The algorithm a method adapts with: its own name, the text baseline's (amortized), or for a
    row named by ``--ckpt NAME=PATH`` (e.g. ``vae``, ``diffusion``) the checkpoint's own."""
    if method in TEXT_ONLY:
        return method_config(cfg, method).train.algo
    if method in (*ALGORITHMS, *UNTRAINED):
        return method
    return ck.info.get("algo", ck.config.train.algo)


def _held_out(cfg: BenchConfig, tasks: TaskSet, base_data) -> TaskSet:
    """The held-out tasks every method is evaluated on: the test split of the data (or all of
    ``cfg.eval_data``), the same seeded subset ``fewgen eval --max-tasks`` takes, every K checked."""
    eval_spec = cfg.eval_data or cfg.data
    eval_all = tasks if not cfg.eval_data else load_tasks(eval_spec, replace(cfg.base, data={"spec": eval_spec}).data)
    held_out = splits_of(eval_all, base_data)["test"] if not cfg.eval_data else eval_all
    if held_out.modality == "image" and tasks.modality == "image" and held_out.example_shape != tasks.example_shape:
        raise FewgenError(f"{eval_spec}: example shape {held_out.example_shape} differs from {tasks.example_shape}")
    held_out = held_out.seeded_subset(cfg.eval_tasks, cfg.seed)  # the same tasks for NLL and quality (= eval's)
    check_shots(held_out, cfg.shots)  # before any training
    return held_out


def _evaluate_method(cfg: BenchConfig, method: str, ck: Checkpoint, adapt_fn, held_out: TaskSet, ecfg,
                     quality: QualitySet | None, seen: set[str], out: Path,
                     scripts: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One method's results entry (NLL, notes, fine-tuning settings, sample quality; text: per
    ``scripts`` group too) and its per-task NLL (steps -> K -> task -> nats) for the paired comparisons."""
    t0 = time.time()
    per_example = None
    if held_out.modality == "text":  # bits per character beside nats per string
        from .metrics.text import bits_per_char_examples as per_example
    report = evaluate(adapt_fn, held_out, ecfg, progress=False, per_example=per_example)
    if held_out.modality == "text":
        add_script_groups(report, scripts)
    per_task = {s: {k: r["per_task"] for k, r in per_k.items()} for s, per_k in report["steps"].items()}
    for per_k in [report["unconditional"], *[r for s in report["steps"].values() for r in s.values()]]:
        per_k.pop("per_task", None)
        per_k.pop("per_task_bits_per_char", None)
    note = steps_note(ck, method if method in (*ALGORITHMS, *UNTRAINED) else None, cfg.steps)
    tc = fine_tuning(ck, _algo_of(cfg, method, ck)).train
    entry: dict[str, Any] = {"eval_seconds": round(time.time() - t0, 1),
                             "train_steps": ck.info.get("step"), "nll": report, "notes": [note] if note else [],
                             "fine_tuning": {"adapt_params": tc.adapt_params, "augment": tc.inner_augment,
                                             "select": tc.inner_select, "inner_steps": tc.inner_steps,
                                             "inner_steps_random": tc.inner_steps_random}}
    if quality is not None:
        entry["adapt_seconds_per_task"] = adaptation_seconds(adapt_fn, quality.support, cfg.steps)
        entry["quality"] = quality_reports(adapt_fn, quality, max(cfg.steps), cfg.base.eval, cfg.quality_samples,
                                           cfg.seed, out / f"samples_{method}.png", method, sensitivity=True)
    if held_out.modality == "text":
        entry["text_quality"] = text_quality_for(adapt_fn, held_out, seen, cfg, scripts)
    return entry, per_task


def paired_comparisons(per_task: dict[str, dict[str, dict[str, dict[str, float]]]]) -> dict[str, Any]:
    """For every method, K and steps s: the paired NLL difference over the same tasks against its own
    0-step NLL (``vs_0_steps``; negative = fine-tuning helped) and against transfer at the same K
    and s (``vs_transfer``; negative = better than transfer), each ``{"mean", "ci95", "tasks"}``."""
    def diff(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        mean, ci, n = paired_difference(a, b)
        return {"mean": mean, "ci95": ci, "tasks": n}

    out: dict[str, Any] = {}
    ref = per_task.get("transfer")
    for m, by_steps in per_task.items():
        out[m] = {"vs_0_steps": {}, "vs_transfer": {}}
        for s, by_k in by_steps.items():
            for k, tasks in by_k.items():
                if "0" in by_steps:
                    out[m]["vs_0_steps"].setdefault(k, {})[s] = diff(tasks, by_steps["0"][k])
                if ref is not None and m != "transfer" and s in ref:
                    out[m]["vs_transfer"].setdefault(k, {})[s] = diff(tasks, ref[s][k])
    return out


# ----------------------------------------------------------------------------- text sample quality

def text_quality_for(adapt_fn, held_out: TaskSet, seen: set[str], cfg: BenchConfig,
                     scripts: dict[str, str] | None = None) -> dict[str, Any]:
    """Text sample figures (fidelity with its ceiling and chance, novelty, validity, support
    sensitivity; per script too) at K = max(shots), after no adaptation steps and after the most
    (as for images)."""
    from .evaluate import text_sample_report

    res = {}
    for s in sorted({0, max(cfg.steps)}):
        r = text_sample_report(adapt_fn, held_out, seen, max(cfg.shots), s, cfg.quality_samples, cfg.seed,
                               fidelity=True, scripts=scripts)
        res[str(s)] = {k: v for k, v in r.items() if k != "per_task"} | {
            "per_task": {t: {k: v for k, v in f.items() if k != "support"} for t, f in r["per_task"].items()}}
    return res


# ----------------------------------------------------------------------------- reporting

def results_markdown(results: dict[str, Any]) -> str:
    """The benchmark's table in Markdown: NLL per method x K x steps, quality and cost."""
    shots, steps = results["shots"], results["steps"]
    lines = [f"Held-out tasks: {results['held_out_tasks']} of `{results['eval_data']}` "
             f"(meta-trained on `{results['data']}`, {results['train_steps']} steps budget). "
             "NLL in nats per example (lower is better), mean ± 95% CI over tasks."
             + (" Text rows also give bits per character." if any("bits_per_char" in m["nll"]["unconditional"]
                                                                   for m in results["methods"].values()) else "")
             + (" Image rows also give bits per sub-pixel (b/d)." if any("bits_per_dim" in m["nll"]["unconditional"]
                                                                        for m in results["methods"].values()) else ""), ""]
    head = "| method | K=0 |" + "".join(f" K={k} s={s} |" for k in shots for s in steps)
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for m, e in results["methods"].items():
        u = e["nll"]["unconditional"]
        row = f"| {m} | {u['nll_nats']:.1f}" + _per_unit(u) + " |"
        for k in shots:
            for s in steps:
                r = e["nll"]["steps"][str(s)][str(k)]
                row += f" {r['nll_nats']:.1f} ± {r['ci95']:.1f}" + _per_unit(r) + " |"
        lines.append(row)
    lines += paired_markdown(results)
    lines += _image_quality_lines(results)
    if any("text_quality" in e for e in results["methods"].values()):
        lines += _text_quality_lines(results)
    return "\n".join(lines) + "\n"


REAL_ROW = "real held-out data"


def _per_unit(r: dict[str, Any]) -> str:
    """An NLL cell's figure per unit: bits per character (text) or per sub-pixel (images)."""
    if "bits_per_char" in r:
        return f" ({r['bits_per_char']:.2f} b/c)"
    return f" ({r['bits_per_dim']:.3f} b/d)" if "bits_per_dim" in r else ""


def _image_quality_lines(results: dict[str, Any]) -> list[str]:
    """The image sample-quality table: a row per method x steps (x sampler), then the row
    ``real held-out data``: the same figures for the quality tasks' real held-out examples
    (:func:`fewgen.metrics.quality.quality_report`'s ``<figure>_real``, the same for every method),
    with fidelity's chance and memorisation's bound. Empty without image quality figures."""
    reports = [(m, e, key, qr) for m, e in results["methods"].items() for key, qr in e.get("quality", {}).items()]
    if not reports:
        return []
    first = reports[0][3]
    lines = ["", f"Sample quality (K={first.get('shots', '?')} shots, {first.get('samples_per_task', '?')} samples and "
             f"{first.get('real_per_task', '?')} real held-out examples per task, {first.get('tasks', '?')} tasks; "
             "domain feature network; mean over tasks). The last row scores real held-out data under the same "
             "protocol: FID, KID and diversity of half of the real examples against the other half (a noise level "
             "at half the size, not a target), fidelity of all of them (chance: 1 / tasks), memorisation of each "
             "against the support and the others (one reference fewer than the samples: it leans high; bound: the "
             "most that samples copying nothing score in "
             "expectation, 1 / (real examples + 1)). Sensitivity (configured sampler): how far the samples move "
             "when another task's support replaces the task's, from the same seed, over how far apart the two "
             "tasks' real examples are (0: the seed alone decides the sample; about 1: it follows the support); "
             "in brackets the same ratio for another seed and the same support.", "",
             "| method | steps | sampler | FID ↓ | KID ↓ | fidelity ↑ | diversity (≈1) | memorisation ↓ | "
             "sensitivity (≈1) | s / 64 samples | adapt s/task | train s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m, e, key, qr in reports:
        s = key.split(":")[0]
        lines.append(f"| {m} | {s} | {qr.get('sampler', '-')} | {_fmt(qr, 'fid')} | {_fmt(qr, 'kid')} | "
                     f"{_fmt(qr, 'fidelity')} | {_fmt(qr, 'diversity')} | {_fmt(qr, 'memorization')} | "
                     f"{_sens(qr)} | {_fmt(qr, 'seconds_per_64')} | "
                     f"{e['adapt_seconds_per_task'].get(s, float('nan')):.3f} | {e['train_seconds']:.0f} |")
    lines.append(f"| {REAL_ROW} | - | - | {_fmt(first, 'fid_real')} | {_fmt(first, 'kid_real')} | "
                 f"{_fmt(first, 'fidelity_real')} (chance {_fmt(first, 'fidelity_chance')}) | "
                 f"{_fmt(first, 'diversity_real')} | {_fmt(first, 'memorization_real')} "
                 f"(bound {_fmt(first, 'memorization_chance')}) | - | - | - | - |")
    return lines


def paired_markdown(results: dict[str, Any]) -> list[str]:
    """Lines of the paired-difference table (see :func:`paired_comparisons`), empty without one."""
    paired = results.get("paired")
    if not paired or not any(s != "0" for p in paired.values() for by_s in p["vs_0_steps"].values() for s in by_s):
        return []  # no fine-tuning steps: nothing to pair
    lines = ["", "Paired differences over the same tasks, mean ± 95% CI (nats; negative = lower NLL): "
             "after s steps minus 0 steps, and minus transfer at the same K and s.", "",
             "| method | K | s | vs 0 steps | vs transfer |", "|---|---|---|---|---|"]
    for m, p in paired.items():
        for k, by_s in p["vs_0_steps"].items():
            for s, d in ((s, d) for s, d in by_s.items() if s != "0"):
                t = p["vs_transfer"].get(k, {}).get(s)
                vs_t = "-" if t is None else f"{t['mean']:+.2f} ± {t['ci95']:.2f}"
                lines.append(f"| {m} | {k} | {s} | {d['mean']:+.2f} ± {d['ci95']:.2f} | {vs_t} |")
    notes = [f"{m}: {n}" for m, e in results["methods"].items() for n in e.get("notes", [])]
    return lines + ([""] + ["Note: " + n for n in notes] if notes else [])


def _text_quality_lines(results: dict[str, Any]) -> list[str]:
    """The text samples' table: fidelity (all tasks / same script), novelty, validity per method."""
    some = next(e["text_quality"] for e in results["methods"].values() if "text_quality" in e)
    r = next(iter(some.values()))
    lines = ["", f"Text samples (K={r['shots']} shots, {r['n']} per task, {r['tasks']} held-out tasks): "
             "fidelity = share attributed to the support's task by character n-gram language identifiers fit on each task's other "
             f"strings; real held-out strings score {_fmt(r, 'fidelity_real')} (same script "
             f"{_fmt(r, 'fidelity_real_same_script')}), chance {_fmt(r, 'fidelity_chance')} "
             f"(same script {_fmt(r, 'fidelity_chance_same_script')}).", "",
             "Support sensitivity: every task's samples beside those drawn with the same seed from another "
             "task's support (of its script when there is one): the share identical (1 = the support is ignored) "
             "and their normalised edit distance, beside that of two real words of the two tasks.", "",
             "| method | steps | fidelity ↑ | same-script fidelity ↑ | novelty (real) | validity (real) | identical ↓ | "
             "edit distance (real) |",
             "|---|---|---|---|---|---|---|---|"]
    for m, e in results["methods"].items():
        for s, q in e.get("text_quality", {}).items():
            sens = q.get("sensitivity", {})
            lines.append(f"| {m} | {s} | {_fmt(q, 'fidelity')} | {_fmt(q, 'fidelity_same_script')} | "
                         f"{_fmt(q, 'novelty')} ({_fmt(q, 'novelty_real')}) | {_fmt(q, 'validity')} "
                         f"({_fmt(q, 'validity_real')}) | {_fmt(sens, 'identical')} | "
                         f"{_fmt(sens, 'edit_distance')} ({_fmt(sens, 'edit_distance_real')}) |")
    return lines + _script_lines(results)


def _script_lines(results: dict[str, Any]) -> list[str]:
    """Bits per character per script at the largest K (0 steps) and same-script fidelity, per method."""
    k = str(max(results["shots"]))
    rows = {m: e["nll"]["steps"].get("0", {}).get(k, {}).get("by_script") for m, e in results["methods"].items()}
    rows = {m: g for m, g in rows.items() if g}
    if not rows:
        return []
    groups = next(iter(rows.values()))
    lines = ["", f"Per script (K={k}, 0 steps): bits per character, and same-script fidelity of the samples.", "",
             "| method | " + " | ".join(f"{g} ({v['tasks']})" for g, v in groups.items()) + " |",
             "|---|" + "---|" * len(groups)]
    for m, by in rows.items():
        fid = results["methods"][m].get("text_quality", {}).get("0", {}).get("by_script", {})
        cells = [f"{_fmt(by.get(g, {}), 'bits_per_char')} / {_fmt(fid.get(g, {}), 'fidelity_same_script')}"
                 for g in groups]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def _sens(qr: dict[str, Any]) -> str:
    """Support sensitivity with the seed's beside it, ``0.64 (seed 0.76)``, or ``-``."""
    return _fmt(qr, "sensitivity") + (f" (seed {_fmt(qr, 'sensitivity_seed')})" if qr.get("sensitivity_seed") is not None else "")


def _fmt(qr: dict[str, Any], key: str) -> str:
    v = qr.get(key)
    if isinstance(v, dict):
        v = v.get("mean", v.get("value"))
    return "-" if v is None else f"{v:.3g}"
