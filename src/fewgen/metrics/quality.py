"""Sample quality of few-shot image generators: fidelity, diversity, memorisation, and the report.

Every figure is per task (a held-out task: its K support examples, its real held-out examples
and n samples generated from the support) and is summarised as a mean with a 95% CI over
tasks (:func:`fewgen.metrics.nll.mean_ci95`). All of them live in the feature space of the
domain feature extractor (:mod:`fewgen.feature_net`, a prototypical network, Snell et al.
2017) with Euclidean distances. The per-task functions take features and are pure; only
:func:`quality_report` runs the network (in chunks, so memory is bounded by the chunk size).

Shapes: ``T`` tasks, ``n`` samples, ``K`` shots, ``Q`` real held-out examples, ``D`` features.

- **Fidelity** (:func:`fidelity`): the share of a task's samples that a nearest-prototype
  classifier (prototypes = mean support feature of each of the T tasks) assigns to their own
  task. Chance is ``1 / T``; real held-out examples score as high as the extractor's few-shot
  accuracy.
- **Diversity** (:func:`diversity`): the mean pairwise distance among a task's samples divided
  by the mean pairwise distance among its real examples. About 1 is right, far below 1 is
  mode collapse (identical samples give 0), far above is noise.
- **Memorisation** (:func:`memorization`): the share of samples that copy a shot (see the
  function for the precise rule). Copies of the support give 1; fresh real examples give at
  most ``1 / (Q + 1)`` in expectation.
- **FID / KID** per task (samples against the task's real examples) and pooled over all tasks
  (:mod:`fewgen.metrics.fid`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..models.nn import masked_mean
from .fid import fid_from_features, kid_from_features
from .nll import mean_ci95

MAX_DIST_ELEMENTS = 1 << 22  # distance entries held at once (16 MiB of float32)


def embed(net: nn.Module, x: Tensor, chunk: int = 512) -> Tensor:
    """Features of images ``(..., C, S, S) -> (..., D)``, in chunks of ``chunk`` images.

    Runs without gradients on the net's device; memory beyond the output is one chunk's
    activations. Returns float32 on the CPU.
    """
    lead, img = x.shape[:-3], x.shape[-3:]
    flat = x.reshape(-1, *img)
    device = next(net.parameters()).device
    with torch.no_grad():
        out = [net(flat[i : i + chunk].to(device)).float().cpu() for i in range(0, len(flat), chunk)]
    d = int(getattr(net, "num_features", 0)) or (out[0].shape[-1] if out else 0)
    return torch.cat(out).reshape(*lead, -1) if out else torch.zeros(*lead, d)


def _dist(a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distances ``(T, n, D), (T, m, D) -> (T, n, m)``, exact (no ``|a|^2 + |b|^2 - 2ab``
    expansion, whose rounding would make a copy's distance to its original non-zero)."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def _task_chunks(num_tasks: int, per_task: int) -> list[slice]:
    """Slices of the task axis small enough that ``per_task`` distance entries per task stay bounded."""
    step = max(1, MAX_DIST_ELEMENTS // max(1, per_task))
    return [slice(i, i + step) for i in range(0, num_tasks, step)]


def _full_mask(support: Tensor, mask: Tensor | None) -> Tensor:
    return torch.ones(support.shape[:2], dtype=torch.bool, device=support.device) if mask is None else mask.bool()


def fidelity(samples: Tensor, support: Tensor, support_mask: Tensor | None = None) -> Tensor:
    """Per-task fidelity ``(T,)``: the share of task t's samples ``(T, n, D)`` whose nearest
    prototype is task t's, the prototypes being the mean features of each task's present
    support examples ``(T, K, D)`` (nearest-prototype classifier, Snell et al. 2017).

    The classifier chooses among all T tasks, so chance is ``1 / T``.
    """
    t, n = samples.shape[:2]
    protos, _ = masked_mean(support, _full_mask(support, support_mask))  # (T, D)
    flat = samples.reshape(t * n, -1)  # (T*n, D)
    rows = max(1, MAX_DIST_ELEMENTS // max(1, t))
    pred = torch.cat([_dist(flat[i : i + rows][None], protos[None])[0].argmin(-1) for i in range(0, t * n, rows)])
    own = torch.arange(t, device=samples.device).repeat_interleave(n)
    return (pred == own).double().view(t, n).mean(1)


def mean_pairwise_distance(x: Tensor) -> Tensor:
    """Mean Euclidean distance over the ordered pairs ``i != j`` of each task: ``(T, n, D) -> (T,)``
    (nan when n < 2)."""
    t, n = x.shape[:2]
    if n < 2:
        return torch.full((t,), float("nan"), dtype=torch.float64)
    # The diagonal is exactly 0 (see _dist), so the sum over all pairs is the sum over i != j.
    return torch.cat([_dist(x[j], x[j]).double().sum((1, 2)) / (n * (n - 1)) for j in _task_chunks(t, n * n)])


def diversity(samples: Tensor, real: Tensor) -> Tensor:
    """Per-task diversity ``(T,)``: mean pairwise feature distance among the samples ``(T, n, D)``
    over the same figure for the real examples ``(T, Q, D)``. 1 matches the real spread; 0 is
    total mode collapse (every sample the same)."""
    return mean_pairwise_distance(samples) / mean_pairwise_distance(real)


def memorization(samples: Tensor, support: Tensor, real: Tensor, support_mask: Tensor | None = None) -> Tensor:
    """Per-task memorisation ``(T,)``: the share of samples that copy a support example.

    For task t with present support features S, real held-out features R = {r_1..r_Q} and
    ``d(x, A) = min_{a in A} |x - a|``, let ``tau = min_q d(r_q, S)``: the closest any real
    example of the task comes to a shot. Sample g is *memorised* when both

    1. its nearest neighbour in ``S ∪ R`` is a support example: ``d(g, S) <= d(g, R)``, and
    2. it is closer to that shot than any real example is to its own nearest shot:
       ``d(g, S) < tau``.

    An exact copy of a shot has ``d(g, S) = 0`` and is memorised (unless a real example
    coincides with a shot, tau = 0, which makes the task's figure 0). A fresh real example of
    the task is memorised only if it beats all Q real examples on ``d(., S)``, which by
    exchangeability happens with probability at most ``1 / (Q + 1)``. nan when Q = 0.
    """
    t, n = samples.shape[:2]
    mask = _full_mask(support, support_mask)
    out = []
    for j in _task_chunks(t, (n + real.shape[1]) * (support.shape[1] + real.shape[1])):
        absent = ~mask[j, None, :]  # (c, 1, K)
        d_gs = _dist(samples[j], support[j]).masked_fill(absent, math.inf).amin(-1)  # (c, n)
        d_gr = _dist(samples[j], real[j]).amin(-1) if real.shape[1] else torch.full_like(d_gs, math.inf)  # (c, n)
        d_rs = _dist(real[j], support[j]).masked_fill(absent, math.inf).amin(-1)  # (c, Q)
        tau = d_rs.amin(-1, keepdim=True) if real.shape[1] else torch.full_like(d_gs[:, :1], math.nan)  # (c, 1)
        hit = (d_gs <= d_gr) & (d_gs < tau)
        share = hit.double().mean(1)
        out.append(share.masked_fill(tau[:, 0].isnan(), math.nan))
    return torch.cat(out)


# ----------------------------------------------------------------------------- the report
def _num(x: float | Tensor) -> float | None:
    """A JSON-safe number: non-finite values (an undefined figure) become None."""
    x = float(x)
    return x if math.isfinite(x) else None


def _summary(report: dict[str, Any], name: str, per_task: Tensor) -> None:
    ok = per_task[per_task.isfinite()]
    mean, ci = mean_ci95(ok)
    report[name], report[name + "_ci95"] = _num(mean), _num(ci)


def quality_report(samples: Tensor, support: Tensor, real: Tensor, net: nn.Module,
                   support_mask: Tensor | None = None, names: Sequence[str] | None = None, chunk: int = 256,
                   kid_subset_size: int = 100, kid_subsets: int = 50, seed: int = 0) -> dict[str, Any]:
    """Every sample-quality figure of T tasks, per task and as a mean with a 95% CI over tasks.

    Args:
        samples: generated images ``(T, n, C, S, S)``, floats in ``[0, 1]``.
        support: the shots they were generated from ``(T, K, C, S, S)`` (``support_mask``
            ``(T, K)`` marks the present ones; all by default).
        real: each task's real held-out examples ``(T, Q, C, S, S)``.
        net: the feature extractor (:class:`fewgen.feature_net.FeatureNet`).
        names: task names for ``per_task`` (default ``"0"``, ``"1"``, ...).
        chunk: images per forward pass of ``net``.
        kid_subset_size, kid_subsets, seed: KID's subsets (size capped at min(n, Q)) and their seed.

    Returns a JSON-safe dict: ``fid``, ``kid``, ``fidelity``, ``diversity``, ``memorization``
    (each with ``<name>_ci95``; undefined figures are None and left out of the means);
    ``fid_pooled`` / ``kid_pooled`` (all samples against all real examples);
    ``fidelity_chance`` (1 / T); ``fidelity_real`` (+ CI): the fidelity of the real examples,
    the ceiling the extractor allows; the sizes ``tasks``, ``samples_per_task``, ``shots``,
    ``real_per_task``, ``feature_dim``; and ``per_task`` ``{name: {figure: value}}``.
    """
    t, n, q = samples.shape[0], samples.shape[1], real.shape[1]
    if support.shape[0] != t or real.shape[0] != t:
        raise ValueError(f"quality_report: samples, support and real disagree on the number of tasks "
                         f"({t}, {support.shape[0]}, {real.shape[0]})")
    f_gen, f_sup, f_real = embed(net, samples, chunk), embed(net, support, chunk), embed(net, real, chunk)  # (T, ., D)
    mask = _full_mask(f_sup, None if support_mask is None else support_mask.cpu())

    nan = torch.full((t,), math.nan, dtype=torch.float64)
    fid_t, kid_t = nan.clone(), nan.clone()
    if n >= 2 and q >= 2:
        for i in range(t):
            fid_t[i] = fid_from_features(f_real[i], f_gen[i])
            kid_t[i] = kid_from_features(f_real[i], f_gen[i], kid_subset_size, kid_subsets, seed + i)[0]
    per = {"fid": fid_t, "kid": kid_t, "fidelity": fidelity(f_gen, f_sup, mask),
           "diversity": diversity(f_gen, f_real) if q >= 2 else nan,
           "memorization": memorization(f_gen, f_sup, f_real, mask)}
    report: dict[str, Any] = {}
    for k, v in per.items():
        _summary(report, k, v)
    _summary(report, "fidelity_real", fidelity(f_real, f_sup, mask) if q else nan)
    pooled_gen, pooled_real = f_gen.reshape(t * n, -1), f_real.reshape(t * q, -1)
    big_enough = len(pooled_gen) >= 2 and len(pooled_real) >= 2
    report["fid_pooled"] = _num(fid_from_features(pooled_real, pooled_gen)) if big_enough else None
    report["kid_pooled"] = (_num(kid_from_features(pooled_real, pooled_gen, kid_subset_size, kid_subsets, seed)[0])
                            if big_enough else None)
    report.update({"fidelity_chance": 1.0 / t if t else None, "tasks": t, "samples_per_task": n,
                   "shots": int(support.shape[1]), "real_per_task": q, "feature_dim": int(f_gen.shape[-1])})
    names = list(names) if names is not None else [str(i) for i in range(t)]
    report["per_task"] = {names[i]: {k: _num(v[i]) for k, v in per.items()} for i in range(t)}
    return report
