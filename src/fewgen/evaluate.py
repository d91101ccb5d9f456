"""Held-out evaluation: conditional NLL of query examples given K support examples.

Protocol. For every held-out task and every K, the task's examples are permuted once (seeded)
and cut into query blocks of ``q = min(max_queries, n - K)`` examples, so that every example
is a query at least once; each block is scored given K *other* examples of the same task as
the support. A task's score is the mean over its queries; the reported figure is the mean
over tasks with a 95% CI over tasks. K = 0 (the empty support) is the unconditional NLL, so
the gain from conditioning shows. With 2 examples per task, K = 1 uses each as the support of
the other ("both ways").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor

from .adaptation import AdaptFn, adapted_nll
from .config import DataConfig, EvalConfig
from .errors import DataError
from .metrics.nll import mean_ci95, per_task_mean
from .models.pixels import bits_per_dim
from .progress import Progress
from .tasks.base import TaskSet, episode_generator


# (nll (B,q), query (B,q,*X)) -> per-example values (B,q), or (values, weights)
PerExample = Callable[[Tensor, Tensor], "Tensor | tuple[Tensor, Tensor]"]


@dataclass(frozen=True)
class EvalEpisodes:
    """All evaluation episodes for one K, grouped by query size for batching."""

    task: Tensor  # (E,) task index of each episode
    support: Tensor  # (E, K, *X)
    query: Tensor  # (E, q, *X)


def eval_episodes(ts: TaskSet, shots: int, max_queries: int, seed: int) -> list[EvalEpisodes]:
    """The rotating-query episodes of every task with at least K + 1 examples."""
    groups: dict[int, list[tuple[int, Tensor, Tensor]]] = {}
    for i in range(len(ts)):
        ex = ts.examples(i)
        n = len(ex)
        if n < shots + 1:
            continue
        q = min(max_queries, n - shots)
        perm = torch.randperm(n, generator=episode_generator(seed, i))
        for j in range(math.ceil(n / q)):
            qi = perm[(j * q + torch.arange(q)) % n]
            si = perm[(j * q + q + torch.arange(shots)) % n]
            groups.setdefault(q, []).append((i, ex[si], ex[qi]))
    return [EvalEpisodes(torch.tensor([t for t, _, _ in eps]), torch.stack([s for _, s, _ in eps]),
                         torch.stack([x for _, _, x in eps])) for eps in groups.values()]


def check_shots(ts: TaskSet, shots: Sequence[int]) -> None:
    """Fail up front, in one line, when a requested K cannot be evaluated on ``ts``.

    K-shot needs a task with K + 1 examples (K support, at least one query). A K that no task
    allows is a DataError naming every such K and the largest K that works; a K that only some
    tasks allow is a warning naming the tasks it leaves out (the report counts tasks per K).
    """
    import warnings

    if len(ts) == 0:
        raise DataError(f"{ts.source or 'the data'}: no tasks to evaluate")
    counts = ts.counts
    most = int(counts.max())
    impossible = sorted(k for k in set(shots) if k >= most)
    if impossible:
        ks = ", ".join(f"K={k}" for k in impossible)
        have = f"every task has {most} examples" if int(counts.min()) == most else \
            f"no task has more than {most} examples ('{ts.names[int(counts.argmax())]}' has the most)"
        raise DataError(f"{ts.source or 'the data'}: cannot evaluate {ks}: {have} and K shots need K + 1; "
                        f"use --shots up to {most - 1}")
    for k in sorted(set(shots)):
        left_out = [ts.names[i] for i in (counts <= k).nonzero()[:, 0].tolist()]
        if left_out:
            names = ", ".join(f"'{n}'" for n in left_out[:3]) + (", ..." if len(left_out) > 3 else "")
            warnings.warn(f"K={k} leaves out {len(left_out)} of {len(ts)} tasks with {k} or fewer examples ({names})")


def conditional_nll(adapt_fn: AdaptFn, ts: TaskSet, shots: int, steps: int, cfg: EvalConfig,
                    progress: bool = False, per_example: PerExample | None = None
                    ) -> dict[str, Any]:
    """Mean held-out NLL (nats per example) given K shots after ``steps`` adaptation steps.

    ``per_example(nll (B,q), query (B,q,*X)) -> (B,q)`` optionally turns NLLs into another
    per-example figure averaged the same way. It may also return ``(values, weights)``, both
    (B,q): a task's figure is then the weighted mean ``sum(w v) / sum(w)``, e.g. bits per
    character weighted by characters, i.e. total bits over total characters
    (:func:`fewgen.metrics.text.bits_per_char_examples`).
    """
    eps_groups = eval_episodes(ts, shots, cfg.max_queries, cfg.seed)
    if not eps_groups:
        raise DataError(f"{ts.source}: no task has more than {shots} examples; cannot evaluate {shots}-shot")
    g = torch.Generator().manual_seed(cfg.seed)
    task_idx, values, extra_vals, extra_w, nq = [], [], [], [], 0
    total = sum(len(e.task) for e in eps_groups)
    bar = Progress(total, 0, f"eval K={shots} steps={steps}", enabled=progress, unit="episode", leave=False)
    for e in eps_groups:
        for b in range(0, len(e.task), cfg.batch_tasks):
            sup, qry = e.support[b : b + cfg.batch_tasks], e.query[b : b + cfg.batch_tasks]
            mask = torch.ones(sup.shape[:2], dtype=torch.bool)
            a = adapt_fn(sup, mask, steps)
            nll = adapted_nll(a, qry, cfg.importance_samples, cfg.chunk, g)  # (B,q)
            task_idx.append(e.task[b : b + cfg.batch_tasks, None].expand_as(nll).reshape(-1))
            values.append(nll.reshape(-1))
            if per_example is not None:
                v = per_example(nll, qry)
                v, w = v if isinstance(v, tuple) else (v, torch.ones_like(v))
                extra_vals.append((v * w).reshape(-1))
                extra_w.append(w.reshape(-1))
            nq += nll.numel()
            bar.update(n=len(sup))
    bar.close()
    ti = torch.cat(task_idx)
    present = torch.unique(ti)
    per_task = per_task_mean(torch.cat(values), ti, len(ts))[present]
    mean, ci = mean_ci95(per_task)
    out: dict[str, Any] = {"nll_nats": mean, "ci95": ci, "tasks": int(len(present)), "queries": nq,
                           # per-task figures allow paired comparisons (methods, shots) on the same tasks
                           "per_task": {ts.names[i]: float(v) for i, v in zip(present.tolist(), per_task)}}
    if ts.modality == "image":  # bits per sub-pixel (C*S*S of them), the unit of the image literature
        dims = math.prod(ts.example_shape)
        out["bits_per_dim"], out["bits_per_dim_ci95"] = bits_per_dim(mean, dims), bits_per_dim(ci, dims)
    if per_example is not None:
        # sum(w v) / sum(w) per task (the counts of the two means cancel)
        per_task_extra = per_task_mean(torch.cat(extra_vals), ti, len(ts)) / per_task_mean(torch.cat(extra_w), ti, len(ts))
        m2, c2 = mean_ci95(per_task_extra[present])
        out["bits_per_char"], out["bits_per_char_ci95"] = m2, c2
        out["per_task_bits_per_char"] = {ts.names[i]: float(per_task_extra[i]) for i in present.tolist()}
    return out


def evaluate(adapt_fn: AdaptFn, ts: TaskSet, cfg: EvalConfig, progress: bool = True,
             per_example: PerExample | None = None,
             unconditional_fn: AdaptFn | None = None) -> dict[str, Any]:
    """The full NLL report: unconditional (K = 0) and every K in ``cfg.shots`` x ``cfg.steps``.

    Returns ``{"unconditional": {...}, "shots": {"K": {...}}, "steps": {"S": {"K": {...}}}}``
    where ``"shots"`` holds the steps = 0 figures.
    """
    ts = ts.seeded_subset(cfg.max_tasks, cfg.seed)
    check_shots(ts, cfg.shots)  # before any work: the K = 0 row comes first
    report: dict[str, Any] = {}
    report["unconditional"] = conditional_nll(unconditional_fn or adapt_fn, ts, 0, 0, cfg, progress, per_example)
    report["steps"] = {}
    for s in cfg.steps:
        report["steps"][str(s)] = {str(k): conditional_nll(adapt_fn, ts, k, s, cfg, progress, per_example)
                                   for k in cfg.shots}
    if "0" in report["steps"]:
        report["shots"] = report["steps"]["0"]
    else:
        report["shots"] = {}
    return report


def add_script_groups(report: dict[str, Any], scripts: Mapping[str, str]) -> dict[str, Any]:
    """Add ``by_script`` (:func:`fewgen.metrics.text_groups.group_means` of the per-task bits per
    character: ``{script: {"tasks": n, "bits_per_char": mean}}``) to the unconditional entry and
    every K x steps entry of an :func:`evaluate` report of text; returns the report."""
    from .metrics.text_groups import group_means

    entries = [report["unconditional"], *(e for per_k in report["steps"].values() for e in per_k.values())]
    for e in entries:
        bits = {t: {"bits_per_char": v} for t, v in e.get("per_task_bits_per_char", {}).items()}
        e["by_script"] = group_means(bits, scripts)
    return report


def training_strings(data: DataConfig, tasks: TaskSet | None = None, missing_ok: bool = False) -> set[str]:
    """The decoded strings of the meta-train split of ``data`` (what a novel sample is not), from
    ``tasks`` when they are loaded already. ``missing_ok``: an empty set when the data cannot be
    read (e.g. a checkpoint's training data that is not on this machine)."""
    from .errors import FewgenError
    from .tasks.spec import load_tasks, splits_of
    from .models.bytes import decode_batch

    try:
        train_ts = splits_of(tasks if tasks is not None else load_tasks(data.spec, data), data)["train"]
    except (FewgenError, OSError):
        if not missing_ok:
            raise
        return set()
    return {s for i in range(len(train_ts)) for s in decode_batch(train_ts.examples(i))}


def _task_samples(adapt_fn: AdaptFn, ts: TaskSet, tasks: list[int], shots: int, steps: int, n: int, seed: int,
                  batch_tasks: int, guidance: float | None = None) -> Iterator[tuple[int, Tensor, Tensor, list[str], list[str]]]:
    """For each task index in ``tasks``: its examples, their seeded permutation, the K support
    strings (the first K of the permutation) and n samples. Adaptation runs ``batch_tasks`` tasks
    at a time; every task is sampled alone from a generator seeded with ``seed``, so two tasks'
    samples differ only through their supports. ``guidance``: text guidance toward the support
    (None: the family's default, :func:`fewgen.sample.text_guidance`)."""
    from .sample import sample_text
    from .models.bytes import decode_batch

    for b in range(0, len(tasks), batch_tasks):
        ids = tasks[b : b + batch_tasks]
        exs = [ts.examples(i) for i in ids]
        perms = [torch.randperm(len(ex), generator=episode_generator(seed, i)) for i, ex in zip(ids, exs)]
        sup = torch.stack([ex[perm[:shots]] for ex, perm in zip(exs, perms)])  # (B, K, L)
        a = adapt_fn(sup, torch.ones(sup.shape[:2], dtype=torch.bool), steps)
        supports = decode_batch(sup) if shots else [[]] * len(ids)
        for j, (i, ex, perm) in enumerate(zip(ids, exs, perms)):
            yield i, ex, perm, supports[j], sample_text(a.task(j), n, seed, guidance=guidance)[0]


def _text_fidelity(per_task: dict[str, dict[str, Any]], held: dict[str, tuple[list[str], list[str]]]
                   ) -> dict[str, Any]:
    """The text fidelity figures of the samples in ``per_task`` against each task's held-out
    (real, references) strings; each task's own figures go into its ``per_task`` entry."""
    from .metrics.text_fidelity import fidelity_report

    names = list(per_task)
    fid = fidelity_report([per_task[t]["samples"] for t in names], [held[t][1] for t in names],
                          [held[t][0] for t in names], names)
    for t, figures in fid.pop("per_task").items():
        per_task[t].update(figures)
    return fid


def text_sample_report(adapt_fn: AdaptFn, ts: TaskSet, training_strings: set[str], shots: int, steps: int = 0,
                       n: int = 20, seed: int = 0, batch_tasks: int = 8, fidelity: bool = False,
                       real_per_task: int = 50, scripts: Mapping[str, str] | None = None,
                       guidance: float | None = None) -> dict[str, Any]:
    """Novelty and validity of text samples (:mod:`fewgen.metrics.text`): for every task with at
    least K examples, K seeded support examples, ``steps`` adaptation steps and n samples, every
    task sampled alone from the same ``seed``.

    ``novelty``: share of samples in neither the support nor ``training_strings`` (the
    meta-training data); ``in_task``: share that are real held-out examples of the task (in its
    data, not in the support); ``validity``: share of valid, non-empty UTF-8. Means over tasks.
    ``novelty_real`` / ``validity_real``: the same figures of n real strings of each task out of
    its support (the strings support sensitivity compares; None for a task with none; means over
    the tasks that have them): what real held-out data scores.
    ``sensitivity``: :func:`fewgen.metrics.support_sensitivity.support_sensitivity` of the
    samples (same seed, two tasks' supports), beside n real strings of each task out of its
    support. ``by_script``: the per-task figures' means per script (``scripts``, default
    :func:`fewgen.metrics.text_groups.task_scripts`).
    ``guidance``: the samplers' text guidance (None: each family's default).
    With ``fidelity`` (tasks with at least K + 2 examples): the text fidelity figures of
    :func:`fewgen.metrics.text_fidelity.fidelity_report`, each task's other examples split into
    up to ``real_per_task`` real held-out strings (the ceiling) and the identifier's references.
    """
    from .metrics.support_sensitivity import support_sensitivity
    from .metrics.text import novelty, validity
    from .metrics.text_groups import group_means, task_scripts
    from .models.bytes import decode_batch

    tasks = [i for i in range(len(ts)) if int(ts.counts[i]) >= shots + (2 if fidelity else 0)]
    scripts = scripts if scripts is not None else task_scripts(ts)
    per_task: dict[str, dict[str, Any]] = {}
    held: dict[str, tuple[list[str], list[str]]] = {}  # task -> (real, references) for fidelity
    words: dict[str, list[str]] = {}  # task -> n real strings out of the support, for sensitivity
    for i, ex, perm, support, samples in _task_samples(adapt_fn, ts, tasks, shots, steps, n, seed, batch_tasks, guidance):
        rest = decode_batch(ex[perm[shots:]])  # the task's other strings, shuffled
        real = set(rest) - set(support)
        per_task[ts.names[i]] = {"novelty": novelty(samples, support, training_strings),
                                 "in_task": sum(x in real for x in samples) / len(samples),
                                 "validity": validity(samples), "support": support, "samples": samples,
                                 "novelty_real": _finite(novelty(rest[:n], support, training_strings)),
                                 "validity_real": _finite(validity(rest[:n]))}
        words[ts.names[i]] = rest[:n]
        if fidelity:
            r = min(real_per_task, len(rest) // 2)
            held[ts.names[i]] = (rest[:r], rest[r:])
    mean = {key: sum(r[key] for r in per_task.values()) / max(len(per_task), 1)
            for key in ("novelty", "in_task", "validity")}
    mean |= {key: _defined_mean([r[key] for r in per_task.values()]) for key in ("novelty_real", "validity_real")}
    out = {"shots": shots, "steps": steps, "n": n, "tasks": len(per_task), **mean, "per_task": per_task}
    if fidelity and per_task:
        out.update(_text_fidelity(per_task, held))
    out["by_script"] = group_means(per_task, scripts)
    out["sensitivity"] = support_sensitivity({t: r["samples"] for t, r in per_task.items()}, words, scripts, seed)
    return out


def _finite(x: float) -> float | None:
    """``x``, or None when it is not finite (an undefined figure, JSON-safe)."""
    return x if math.isfinite(x) else None


def _defined_mean(values: Sequence[float | None]) -> float | None:
    """The mean of the values that are not None (None if none is)."""
    ok = [v for v in values if v is not None]
    return sum(ok) / len(ok) if ok else None


def format_report(report: dict[str, Any]) -> str:
    """A short human-readable table of an evaluation report: NLL rows (text: bits per character,
    and per script), the text baseline's rows under them, then the sample figures."""
    lines = [f"{'support':>12} {'steps':>5} {'NLL (nats)':>12} {'±95%':>7} {'tasks':>6}"]
    lines += _nll_rows(report)
    base = report.get("baseline")
    if base:
        lines.append(f"baseline: {base['name']}" + (f": skipped, {base['skipped']}" if "skipped" in base else ""))
        lines += _nll_rows(base) if "unconditional" in base else []
    if "samples" in report:
        lines += _sample_lines(report["samples"], "samples")
    if base and "samples" in base:
        lines += _sample_lines(base["samples"], "baseline samples")
    lines += quality_lines(report.get("quality", {}))  # images: fewgen eval --metrics fid,...
    return "\n".join(lines)


QUALITY_FIGURES = ("fid", "kid", "fidelity", "diversity", "memorization", "sensitivity", "fid_pooled", "kid_pooled")
QUALITY_LEVELS = {"fidelity": "chance", "memorization": "bound"}  # the figure's level printed beside its real value


def quality_lines(quality: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per steps entry of image sample-quality figures
    (:func:`fewgen.metrics.quality.quality_report`), each figure beside its real held-out value
    (and fidelity's chance, memorisation's bound), e.g. ``memorization 0.49 ± 0.1 (real -, bound
    0.5)``; then one line saying what "real" and the levels are. Empty without entries."""
    lines = []
    for s, q in quality.items():
        figures = ", ".join(_quality_figure(q, k) for k in QUALITY_FIGURES if q.get(k) is not None)
        lines.append(f"samples after {s} steps ({q.get('sampler', '-')}, {q.get('samples_per_task', '?')} per task, "
                     f"{q.get('tasks', '?')} tasks): {figures}; {q.get('seconds_per_64', float('nan')):.2f} s per 64 samples")
    if lines:
        q = next(iter(quality.values()))
        lines.append(f"  real: the same figure for the {q.get('real_per_task', '?')} real held-out examples per task "
                     "(fid, kid, diversity: one half against the other, a noise level at half the size; fidelity: "
                     "all of them; memorization: each against the support and the others, one reference fewer than the "
                     "samples, so it leans high); chance: 1 / tasks; "
                     "bound: the most samples that copy nothing score in expectation, 1 / (real + 1)"
                     + ("; sensitivity: how far the samples move when another task's support replaces the "
                        "task's (same seed), over how far apart the two tasks' real examples are (0 = the "
                        "support is ignored; seed: the same for another seed and the same support)"
                        if q.get("sensitivity") is not None else ""))
    return lines


def _quality_figure(q: Mapping[str, Any], key: str) -> str:
    """``key mean ± ci (real r[, level l])`` of one quality figure ('-' for an undefined real value)."""
    ci = q.get(key + "_ci95")
    text = f"{key} {q[key]:.3g}" + (f" ± {ci:.2g}" if ci is not None else "")
    real = q.get(key + "_real")
    extras = [f"real {'-' if real is None else format(real, '.3g')}"] if key + "_real" in q else []
    if q.get(key + "_seed") is not None:  # sensitivity: what a change of seed moves, on the same scale
        extras.append(f"seed {q[key + '_seed']:.3g}")
    level = QUALITY_LEVELS.get(key)
    if level and q.get(f"{key}_chance") is not None:
        extras.append(f"{level} {q[f'{key}_chance']:.3g}")
    return text + (f" ({', '.join(extras)})" if extras else "")


def _nll_rows(report: dict[str, Any]) -> list[str]:
    """The K = 0 row and one row per K x steps, each with its per-script bits/char line (text)."""
    from .metrics.text_groups import format_groups

    rows = [("none (K=0)", "0", report["unconditional"])]
    rows += [("K=" + k, s, r) for s, per_k in report["steps"].items() for k, r in per_k.items()]
    lines = []
    for label, s, r in rows:
        lines.append(f"{label:>12} {s:>5} {r['nll_nats']:>12.2f} {r['ci95']:>7.2f} {r['tasks']:>6}"
                     + (f"   {r['bits_per_char']:.3f} bits/char" if "bits_per_char" in r else "")
                     + (f"   {r['bits_per_dim']:.3f} bits/dim" if "bits_per_dim" in r else ""))
        if r.get("by_script"):
            lines.append(f"{'':>14}bits/char by script: {format_groups(r['by_script'], 'bits_per_char')}")
    return lines


def _sample_lines(r: dict[str, Any], title: str) -> list[str]:
    """The text samples' figures: novelty and validity, fidelity (per script), support sensitivity."""
    from .metrics.text_groups import format_groups

    guided = f", guidance {r['guidance']:g}" if r.get("guidance", 1.0) != 1.0 else ""
    lines = [f"{title} (K={r['shots']}, steps={r['steps']}, {r['n']} per task, {r['tasks']} tasks{guided}): "
             f"novelty {r['novelty']:.2f} (real {_f(r, 'novelty_real')}), real held-out examples {r['in_task']:.2f}, "
             f"validity {r['validity']:.2f} (real {_f(r, 'validity_real')})"]
    if r.get("fidelity") is not None:
        lines.append(f"  fidelity: {r['fidelity']:.2f} of samples attributed to the support's task "
                     f"(real {r['fidelity_real']:.2f}, chance {r['fidelity_chance']:.2f}); among tasks of its "
                     f"script {r['fidelity_same_script']:.2f} (real {r['fidelity_real_same_script']:.2f}, "
                     f"chance {r['fidelity_chance_same_script']:.2f})")
        for script, g in r.get("by_script", {}).items():
            tasks = f"{g['tasks']} task" + ("s" if g["tasks"] != 1 else "")
            lines.append(f"    {script} ({tasks}): fidelity {_f(g, 'fidelity')} (real {_f(g, 'fidelity_real')}, "
                         f"chance {_f(g, 'fidelity_chance')}); same script {_f(g, 'fidelity_same_script')} "
                         f"(real {_f(g, 'fidelity_real_same_script')}, chance {_f(g, 'fidelity_chance_same_script')})")
    sens = r.get("sensitivity")
    if sens and sens["pairs"]:
        lines.append(f"  support sensitivity ({sens['pairs']} task pairs, {sens['same_script_pairs']} of one script; "
                     f"same seed, two supports): {_f(sens, 'identical')} identical, edit distance "
                     f"{_f(sens, 'edit_distance')} (real words of two tasks {_f(sens, 'edit_distance_real')})")
        if sens["by_script"]:
            lines.append(f"    edit distance by script: {format_groups(sens['by_script'], 'edit_distance')}")
    return lines


def _f(figures: dict[str, Any], key: str) -> str:
    v = figures.get(key)
    return "-" if v is None else f"{v:.2f}"


def parse_int_list(text: str | Sequence[int], what: str) -> tuple[int, ...]:
    """'1,5,10' -> (1, 5, 10); a clear error otherwise."""
    if not isinstance(text, str):
        return tuple(int(t) for t in text)
    try:
        vals = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise DataError(f"--{what} must be comma-separated integers, got '{text}'") from None
    if not vals or min(vals) < 0:
        raise DataError(f"--{what} must be non-negative integers, got '{text}'")
    return vals
