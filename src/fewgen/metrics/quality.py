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
- **Support sensitivity** (:func:`support_sensitivity`): how far a task's samples move when only
  its support changes (another task's shots, the same seed), over how far apart the two tasks'
  real examples are. 0: the seed alone decides the sample (the support is ignored); about 1:
  the samples change as much as the concept does. Beside it, the same ratio for a change of
  seed with the support kept (:func:`seed_sensitivity`): which of the two decides the sample.
- **FID / KID** per task (samples against the task's real examples) and pooled over all tasks
  (:mod:`fewgen.metrics.fid`).

Every figure comes with the value *real* held-out data gets under the same protocol, computed
by the same function (:func:`quality_report`'s ``<figure>_real``), since none of them reads
alone: with Q = 1 real example a fresh real drawing counts as memorised with probability up to
1/2. Fidelity and memorisation score the real examples themselves (memorisation leave-one-out,
:func:`memorization_real`); FID, KID and diversity score one random half of them against the
other (:func:`real_halves`).
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
        share = _copies(d_gs, d_gr, tau).double().mean(1)
        out.append(share.masked_fill(tau[:, 0].isnan(), math.nan))
    return torch.cat(out)


def _copies(d_gs: Tensor, d_gr: Tensor, tau: Tensor) -> Tensor:
    """:func:`memorization`'s rule on distances (broadcast): nearest to a shot, ``d(g, S) <= d(g, R)``,
    and closer to it than any reference real example is to its own, ``d(g, S) < tau``."""
    return (d_gs <= d_gr) & (d_gs < tau)


def memorization_real(support: Tensor, real: Tensor, support_mask: Tensor | None = None) -> Tensor:
    """Per-task memorisation of the real examples themselves ``(T,)``, leave-one-out: what a fresh
    real drawing scores under :func:`memorization`'s rule.

    Each real example r_q ``(T, Q, D)`` is scored exactly as a sample is, against the present
    support S and the *other* real examples ``R \\ {r_q}`` (its tau is the closest any other real
    example comes to a shot); the task's figure is the share of its Q examples memorised.

    r_q is memorised only if it is strictly closer to a shot than every other real example, which
    at most one of them is, so the figure is at most ``1 / Q`` in every task. It has one reference
    fewer (Q - 1) than the samples, whose bound is ``1 / (Q + 1)``: it leans high, and samples at
    or below it show no more copying than real data does. nan when Q < 2: with no other real
    example tau is undefined (as :func:`memorization` is nan with no real example).
    """
    t, q = real.shape[:2]
    if q < 2:
        return torch.full((t,), math.nan, dtype=torch.float64)
    mask = _full_mask(support, support_mask)
    others = ~torch.eye(q, dtype=torch.bool, device=real.device)  # (Q, Q): row q, the references of r_q
    out = []
    for j in _task_chunks(t, q * (q + support.shape[1])):
        d_rs = _dist(real[j], support[j]).masked_fill(~mask[j, None, :], math.inf).amin(-1)  # (c, Q)
        d_rr = _dist(real[j], real[j]).masked_fill(~others, math.inf).amin(-1)  # (c, Q): to the nearest other
        tau = d_rs[:, None, :].masked_fill(~others, math.inf).amin(-1)  # (c, Q): tau of R \ {r_q}
        out.append(_copies(d_rs, d_rr, tau).double().mean(1))
    return torch.cat(out)


def partners(num_tasks: int, seed: int = 0) -> Tensor:
    """Each task's partner for :func:`support_sensitivity` ``(T,)``: the next task in a seeded
    random cycle through all T, so no task is its own partner. Needs T >= 2."""
    if num_tasks < 2:
        raise ValueError(f"partners: need two tasks at least, got {num_tasks}")
    order = torch.randperm(num_tasks, generator=torch.Generator().manual_seed(seed))
    partner = torch.empty_like(order)
    partner[order] = order.roll(-1)
    return partner


def support_sensitivity(samples: Tensor, swapped: Tensor, real: Tensor, partner: Tensor) -> Tensor:
    """Per-task support sensitivity ``(T,)``: the mean distance between task t's samples ``(T, n, D)``
    and the same-index samples drawn with the same seed from its partner's support instead
    (``swapped[t]``, the support of task ``partner[t]``), over the mean distance between task t's
    real examples and its partner's ``(T, Q, D)``.

    A model that ignores its support draws the same image from the same noise whatever the
    shots: 0. One that reads it moves its samples as far as the concepts' real examples lie apart:
    about 1 (the shared noise may keep some layout, so a little below 1 is no fault)."""
    moved = (samples - swapped).norm(dim=-1).double().mean(1)  # (T,)
    return moved / _concepts_apart(real, partner)


def seed_sensitivity(samples: Tensor, real: Tensor, partner: Tensor) -> Tensor:
    """Per-task ``(T,)``: :func:`support_sensitivity` for a change of seed instead of support: the
    mean distance between two of task t's samples ``(T, n, D)`` (other noise, the same shots) over
    the same distance between its real examples and its partner's ``(T, Q, D)``. Where it is above
    :func:`support_sensitivity`, the seed moves the samples more than the support does."""
    return mean_pairwise_distance(samples) / _concepts_apart(real, partner)


def _concepts_apart(real: Tensor, partner: Tensor) -> Tensor:
    """The mean distance between task t's real examples and task ``partner[t]``'s ``(T,)``."""
    other = real[partner.to(real.device)]
    return torch.cat([_dist(real[j], other[j]).double().mean((1, 2)) for j in _task_chunks(len(real), real.shape[1] ** 2)])


# ----------------------------------------------------------------------------- the report
def _num(x: float | Tensor) -> float | None:
    """A JSON-safe number: non-finite values (an undefined figure) become None."""
    x = float(x)
    return x if math.isfinite(x) else None


def _summary(report: dict[str, Any], name: str, per_task: Tensor) -> None:
    ok = per_task[per_task.isfinite()]
    mean, ci = mean_ci95(ok)
    report[name], report[name + "_ci95"] = _num(mean), _num(ci)


def real_halves(real: Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Two disjoint random halves of each task's real examples ``(T, Q, D) -> 2 x (T, Q // 2, D)``
    (a seeded permutation per task; one example is left out when Q is odd): the real data that
    FID, KID and diversity of real against real compare."""
    t, q = real.shape[:2]
    perm = torch.rand(t, q, generator=torch.Generator().manual_seed(seed)).argsort(1).to(real.device)
    shuffled = real.gather(1, perm[..., None].expand_as(real))
    return shuffled[:, : q // 2], shuffled[:, q // 2 : 2 * (q // 2)]


def _fid_kid_per_task(real: Tensor, fake: Tensor, subset_size: int, subsets: int, seed: int) -> tuple[Tensor, Tensor]:
    """Per-task FID and KID ``(T,)`` of ``fake`` ``(T, n, D)`` against ``real`` ``(T, m, D)``
    (KID seeded ``seed + t`` for task t); nan unless n, m >= 2."""
    t = real.shape[0]
    fid_t, kid_t = torch.full((t,), math.nan, dtype=torch.float64), torch.full((t,), math.nan, dtype=torch.float64)
    if real.shape[1] >= 2 and fake.shape[1] >= 2:
        for i in range(t):  # torchmetrics fits one pair of sets at a time
            fid_t[i] = fid_from_features(real[i], fake[i])
            kid_t[i] = kid_from_features(real[i], fake[i], subset_size, subsets, seed + i)[0]
    return fid_t, kid_t


def _fid_kid_pooled(real: Tensor, fake: Tensor, subset_size: int, subsets: int, seed: int
                    ) -> tuple[float | None, float | None]:
    """FID and KID of all tasks' ``fake`` features against all their ``real`` ones (None when
    either pool has fewer than 2)."""
    r, f = real.reshape(-1, real.shape[-1]), fake.reshape(-1, fake.shape[-1])
    if len(r) < 2 or len(f) < 2:
        return None, None
    return _num(fid_from_features(r, f)), _num(kid_from_features(r, f, subset_size, subsets, seed)[0])


def _per_task_figures(f_gen: Tensor, f_sup: Tensor, f_real: Tensor, mask: Tensor, halves: tuple[Tensor, Tensor],
                      kid_args: tuple[int, int, int]) -> dict[str, Tensor]:
    """Every per-task figure ``(T,)`` of :func:`quality_report` from the features, and its real value."""
    t, q = f_gen.shape[0], f_real.shape[1]
    nan = torch.full((t,), math.nan, dtype=torch.float64)
    fid_t, kid_t = _fid_kid_per_task(f_real, f_gen, *kid_args)
    fid_r, kid_r = _fid_kid_per_task(*halves, *kid_args)
    return {"fid": fid_t, "kid": kid_t, "fidelity": fidelity(f_gen, f_sup, mask),
            "diversity": diversity(f_gen, f_real) if q >= 2 else nan,
            "memorization": memorization(f_gen, f_sup, f_real, mask),
            "fid_real": fid_r, "kid_real": kid_r, "fidelity_real": fidelity(f_real, f_sup, mask) if q else nan,
            "diversity_real": diversity(*halves), "memorization_real": memorization_real(f_sup, f_real, mask)}


def _sensitivities(net: nn.Module, f_gen: Tensor, f_real: Tensor, swapped: Tensor | None, partner: Tensor | None,
                   chunk: int) -> dict[str, Tensor]:
    """``sensitivity`` (:func:`support_sensitivity` of the ``swapped`` samples) and ``sensitivity_seed``
    (:func:`seed_sensitivity`) per task, or nothing without ``swapped``. Neither has a real value:
    real data has no seed; 0 is a model that ignores its support, about 1 one that follows it."""
    if swapped is None or partner is None:
        return {}
    return {"sensitivity": support_sensitivity(f_gen, embed(net, swapped, chunk), f_real, partner),
            "sensitivity_seed": seed_sensitivity(f_gen, f_real, partner)}


def quality_report(samples: Tensor, support: Tensor, real: Tensor, net: nn.Module,
                   support_mask: Tensor | None = None, names: Sequence[str] | None = None, chunk: int = 256,
                   kid_subset_size: int = 100, kid_subsets: int = 50, seed: int = 0,
                   swapped: Tensor | None = None, partner: Tensor | None = None) -> dict[str, Any]:
    """Every sample-quality figure of T tasks beside the value real held-out data gets under the
    same protocol, per task and as a mean with a 95% CI over tasks.

    Args:
        samples: generated images ``(T, n, C, S, S)``, floats in ``[0, 1]``.
        support: the shots they were generated from ``(T, K, C, S, S)`` (``support_mask``
            ``(T, K)`` marks the present ones; all by default).
        real: each task's real held-out examples ``(T, Q, C, S, S)``.
        net: the feature extractor (:class:`fewgen.feature_net.FeatureNet`).
        names: task names for ``per_task`` (default ``"0"``, ``"1"``, ...).
        chunk: images per forward pass of ``net``.
        kid_subset_size, kid_subsets, seed: KID's subsets (size capped at the smaller set) and
            their seed; ``seed`` also draws :func:`real_halves`.
        swapped, partner: samples drawn from the same seed with task ``partner[t]``'s support in
            task t's place: ``sensitivity`` and ``sensitivity_seed`` (:func:`_sensitivities`).

    Returns a JSON-safe dict: ``fid``, ``kid``, ``fidelity``, ``diversity``, ``memorization``
    (each with ``<name>_ci95``; undefined figures are None and left out of the means) and each
    with ``<name>_real`` (+ ``<name>_real_ci95``), the same function on real data:

    - ``fidelity_real``: the fidelity of the real examples, the ceiling the extractor allows;
      ``fidelity_chance`` is 1 / T.
    - ``memorization_real``: :func:`memorization_real`, leave-one-out (at most 1 / Q per task;
      None when Q < 2). ``memorization_chance``: ``1 / (Q + 1)``, the most samples that copy
      nothing (drawn like the real examples) score in expectation.
    - ``diversity_real``, ``fid_real``, ``kid_real``: one half of the real examples against the
      other (:func:`real_halves`; None when Q < 4). They are measured at Q // 2 against Q // 2,
      not n against Q: FID's upward small-set bias is larger there, so ``fid_real`` is the noise
      level of the figure at that size, to read beside ``fid``, not an equal-size target.

    ``fid_pooled`` / ``kid_pooled`` (all samples against all real examples) and
    ``fid_pooled_real`` / ``kid_pooled_real`` (all first halves against all second halves);
    the sizes ``tasks``, ``samples_per_task``, ``shots``, ``real_per_task``, ``feature_dim``;
    and ``per_task`` ``{name: {figure: value}}`` with every per-task figure and its real value.
    """
    t, n, q = samples.shape[0], samples.shape[1], real.shape[1]
    if support.shape[0] != t or real.shape[0] != t:
        raise ValueError(f"quality_report: samples, support and real disagree on the number of tasks "
                         f"({t}, {support.shape[0]}, {real.shape[0]})")
    f_gen, f_sup, f_real = embed(net, samples, chunk), embed(net, support, chunk), embed(net, real, chunk)  # (T, ., D)
    mask = _full_mask(f_sup, None if support_mask is None else support_mask.cpu())
    half_a, half_b = real_halves(f_real, seed)
    kid_args = (kid_subset_size, kid_subsets, seed)
    per = _per_task_figures(f_gen, f_sup, f_real, mask, (half_a, half_b), kid_args)
    per |= _sensitivities(net, f_gen, f_real, swapped, partner, chunk)
    report: dict[str, Any] = {}
    for k, v in per.items():
        _summary(report, k, v)
    report["fid_pooled"], report["kid_pooled"] = _fid_kid_pooled(f_real, f_gen, *kid_args)
    report["fid_pooled_real"], report["kid_pooled_real"] = _fid_kid_pooled(half_a, half_b, *kid_args)
    report.update({"fidelity_chance": 1.0 / t if t else None, "memorization_chance": 1.0 / (q + 1) if q else None,
                   "tasks": t, "samples_per_task": n, "shots": int(support.shape[1]), "real_per_task": q,
                   "feature_dim": int(f_gen.shape[-1])})
    names = list(names) if names is not None else [str(i) for i in range(t)]
    report["per_task"] = {names[i]: {k: _num(v[i]) for k, v in per.items()} for i in range(t)}
    return report
