"""Every sample-quality figure beside the value real held-out data gets under the same protocol
(issue 23: a metric cannot be read without its chance level).

Features here are the images' pixels (:class:`PixelFeatures`), so the figures follow from
Gaussians drawn per task: fast, exact and seeded.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from fewgen.bench import REAL_ROW, _fmt, results_markdown
from fewgen.evaluate import format_report, quality_lines
from fewgen.metrics.quality import (
    memorization,
    memorization_real,
    quality_report,
    real_halves,
)

REAL_FIGURES = ("fid", "kid", "fidelity", "diversity", "memorization")


class PixelFeatures(nn.Module):
    """Images ``(B, D, 1, 1)`` -> features ``(B, D)``: the pixels themselves (a parameter only
    because :func:`fewgen.metrics.quality.embed` takes the device from one)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) * self.scale


def task_draws(tasks: int, sizes: tuple[int, ...], dim: int, seed: int) -> list[torch.Tensor]:
    """Independent draws ``(tasks, m, dim)`` for each m in ``sizes`` from each task's own Gaussian
    (centres 3 apart on average, unit spread): support, real, samples ... of the same tasks."""
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(tasks, 1, dim, generator=g)
    return [centres + torch.randn(tasks, m, dim, generator=g) for m in sizes]


def report(samples: torch.Tensor, support: torch.Tensor, real: torch.Tensor) -> dict:
    """:func:`quality_report` on features given as ``(T, m, D)`` (images ``(T, m, D, 1, 1)``)."""
    img = lambda x: x[..., None, None]
    return quality_report(img(samples), img(support), img(real), PixelFeatures(), kid_subsets=5)


# ----------------------------------------------------------------------------- memorisation of real data
def test_memorization_real_is_memorization_with_each_real_example_left_out():
    support, real = task_draws(7, (3, 5), 2, seed=0)
    mask = torch.rand(7, 3, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[:, 0] = True
    q = real.shape[1]
    by_definition = torch.stack([memorization(real[:, i : i + 1], support, real[:, [j for j in range(q) if j != i]], mask)
                                 for i in range(q)], 1).mean(1)
    got = memorization_real(support, real, mask)
    assert torch.equal(got, by_definition)
    assert torch.all(got <= 1 / q)  # at most one real example is strictly the closest to a shot
    assert torch.all(memorization_real(support, real[:, :1]).isnan())  # no other real example: tau undefined


def test_samples_drawn_like_real_data_score_what_real_data_scores():
    """A generator that draws fresh examples of each task (copying nothing) scores, against Q - 1
    real examples, what the real examples score leave-one-out against the other Q - 1; against
    all Q it scores less (one more reference), within the 1 / (Q + 1) bound."""
    support, real, fresh = task_draws(4000, (2, 3, 4), 2, seed=0)
    q = real.shape[1]
    real_level = memorization_real(support, real).mean().item()
    fewer_refs = memorization(fresh, support, real[:, : q - 1])
    all_refs = memorization(fresh, support, real)
    assert fewer_refs.mean().item() == pytest.approx(real_level, abs=0.025)  # ~5 standard errors
    assert torch.all(all_refs <= fewer_refs)  # a reference can only turn a copy into a non-copy
    assert all_refs.mean().item() <= 1 / (q + 1) + 0.02 and all_refs.mean().item() < real_level


def test_exact_copies_of_the_shots_are_memorised_while_real_data_stays_at_its_level():
    support, real, fresh = task_draws(20, (3, 6, 8), 3, seed=2)
    copies = support.repeat(1, 3, 1)  # (T, 9, D): every sample a shot
    honest, copied = report(fresh, support, real), report(copies, support, real)
    assert copied["memorization"] == 1.0 and honest["memorization"] < 0.5
    for key in ("memorization_real", "fid_real", "kid_real", "diversity_real", "fidelity_real"):
        assert copied[key] == honest[key] is not None  # a property of the real data, not of the samples
    assert honest["memorization_real"] <= 1 / 6 and honest["memorization_chance"] == 1 / 7
    assert copied["memorization_real"] < copied["memorization"]


# ----------------------------------------------------------------------------- halves: FID, KID, diversity
def test_real_halves_are_disjoint_seeded_halves_of_each_task():
    real = torch.arange(2 * 7, dtype=torch.float32).view(2, 7, 1)
    a, b = real_halves(real, seed=3)
    assert a.shape == b.shape == (2, 3, 1)
    for t in range(2):
        left, right = set(a[t, :, 0].tolist()), set(b[t, :, 0].tolist())
        assert not left & right and left | right <= set(real[t, :, 0].tolist())
    assert all(torch.equal(x, y) for x, y in zip((a, b), real_halves(real, seed=3)))


def test_real_against_real_is_the_noise_level_of_fid_kid_and_diversity():
    support, real, close, far = task_draws(3, (5, 400, 200, 200), 4, seed=4)
    r, shifted = report(close, support, real), report(far + 1.0, support, real)  # far: FID about 4 * 1^2
    assert r["diversity_real"] == pytest.approx(1.0, abs=0.1)
    assert 3 < shifted["fid"] and r["fid_real"] < 0.1 * shifted["fid"] and abs(r["kid_real"]) < 0.05 * shifted["kid"]
    assert r["fid_pooled_real"] < 0.1 * shifted["fid_pooled"]


@pytest.mark.parametrize("q, defined", [(1, ()), (3, ("memorization",)),
                                        (4, ("memorization", "diversity", "fid", "kid"))])
def test_real_figures_are_none_where_too_few_real_examples_define_them(q, defined):
    support, real, samples = task_draws(4, (2, q, 5), 2, seed=5)
    r = report(samples, support, real)
    for key in ("memorization", "diversity", "fid", "kid"):
        assert (r[key + "_real"] is not None) == (key in defined), key
        assert (r[key + "_real_ci95"] is not None) == (key in defined), key
    assert r["fidelity_real"] is not None and r["memorization_chance"] == 1 / (q + 1)
    assert (r["fid_pooled_real"] is None) == (q < 2)
    assert set(next(iter(r["per_task"].values()))) == {k + end for k in REAL_FIGURES for end in ("", "_real")}
    json.dumps(r, allow_nan=False)  # undefined figures are None


# ----------------------------------------------------------------------------- printed forms
def one_real_example_per_task() -> dict:
    """The issue's case: K = 1 shot and Q = 1 real held-out example per task."""
    support, real, samples = task_draws(6, (1, 1, 4), 2, seed=6)
    return {**report(samples, support, real), "sampler": "default", "seconds_per_64": 0.5}


def test_eval_prints_every_figure_beside_its_real_value_and_level():
    q = one_real_example_per_task()
    text = format_report({"unconditional": {"nll_nats": 1.0, "ci95": 0.1, "tasks": 6}, "steps": {},
                          "quality": {"0": q}})
    line = next(x for x in text.splitlines() if x.startswith("samples after 0 steps"))
    assert f"memorization {q['memorization']:.3g} ± {q['memorization_ci95']:.2g} (real -, bound 0.5)" in line
    assert f"fidelity {q['fidelity']:.3g}" in line and f"(real {q['fidelity_real']:.3g}, chance {1 / 6:.3g})" in line
    assert f"fid_pooled {q['fid_pooled']:.3g} (real -)" in line and "diversity" not in line  # Q = 1: no diversity
    assert "1 real held-out examples per task" in text and "1 / (real + 1)" in text
    assert quality_lines({}) == []


def test_eval_prints_a_defined_real_value():
    support, real, samples = task_draws(5, (2, 6, 6), 2, seed=7)
    q = report(samples, support, real)
    line = quality_lines({"2": q})[0]
    for key in REAL_FIGURES:
        assert f"{key} {q[key]:.3g}" in line and f"(real {q[key + '_real']:.3g}" in line, key


def test_bench_table_has_a_real_held_out_data_row():
    q = one_real_example_per_task()
    support, real, samples = task_draws(6, (1, 8, 4), 2, seed=8)
    q8 = {**report(samples, support, real), "sampler": "default", "seconds_per_64": 0.5}
    method = {"nll": {"unconditional": {"nll_nats": 1.0}, "steps": {"0": {"1": {"nll_nats": 1.0, "ci95": 0.1}}}},
              "adapt_seconds_per_task": {"0": 0.01}, "train_seconds": 3}
    for qr in (q, q8):
        results = {"shots": [1], "steps": [0], "held_out_tasks": 6, "eval_data": "x", "data": "x", "train_steps": 1,
                   "methods": {"a": {**method, "quality": {"0": qr}}, "b": {**method, "quality": {"0": qr}}}}
        md = results_markdown(results)
        lines = md.splitlines()
        rows = [x for x in lines if x.startswith(f"| {REAL_ROW} |")]
        last_method = max(i for i, x in enumerate(lines) if x.startswith(("| a | 0 |", "| b | 0 |")))
        assert len(rows) == 1 and lines.index(rows[0]) == last_method + 1  # one row, under the methods'
        cells = [c.strip() for c in rows[0].strip("|").split("|")]
        assert cells[3:7] == [_fmt(qr, "fid_real"), _fmt(qr, "kid_real"),
                              f"{_fmt(qr, 'fidelity_real')} (chance {_fmt(qr, 'fidelity_chance')})",
                              _fmt(qr, "diversity_real")]
        assert cells[7] == f"{_fmt(qr, 'memorization_real')} (bound {_fmt(qr, 'memorization_chance')})"
        assert "K=1 shots" in md
    assert cells[3] != "-" and cells[7].split()[0] != "-"  # Q = 8: every real figure is defined
    assert math.isclose(q["memorization_chance"], 0.5)


# ----------------------------------------------------------------------------- text: novelty and validity
LATIN = ["abba", "baca", "cab", "acca", "bab", "caca", "abc", "cba", "aab", "bbc"]
CYRILLIC = ["абба", "баба", "вав", "авва", "ббв", "вава", "абв", "вба", "ааб", "ббв"]


def test_text_novelty_and_validity_come_with_the_real_strings_values():
    from fewgen.adaptation import adapt
    from fewgen.evaluate import text_sample_report
    from fewgen.metrics.text import novelty, validity
    from fewgen.models.text_ngram import TextNgram
    from fewgen.tasks.base import TaskSet, episode_generator
    from fewgen.models.bytes import encode_batch, tokenizer_meta

    words = {"latin": LATIN, "cyrillic": CYRILLIC}
    ts = TaskSet.from_lists(list(words), list(words), [encode_batch(w, 24) for w in words.values()], "text", "test",
                            tokenizer_meta(24))
    model = TextNgram(order=2)
    model.fit_counts([encode_batch(LATIN + CYRILLIC, 24)], [])
    seen = {"abba", "cab", "абба"}  # "training strings": some real words of both tasks
    r = text_sample_report(lambda sup, mask, steps: adapt(model, sup, mask), ts, seen, shots=5, n=3, seed=3)
    expected = {}
    for i, (name, w) in enumerate(words.items()):  # the report's support and real strings, drawn as it draws them
        perm = torch.randperm(len(w), generator=episode_generator(3, i)).tolist()
        support, rest = [w[j] for j in perm[:5]], [w[j] for j in perm[5:8]]
        expected[name] = novelty(rest, support, seen), validity(rest)
        assert (r["per_task"][name]["novelty_real"], r["per_task"][name]["validity_real"]) == expected[name]
    assert r["novelty_real"] == pytest.approx(sum(e[0] for e in expected.values()) / 2)
    assert r["validity_real"] == 1.0
    text = format_report({"unconditional": {"nll_nats": 1.0, "ci95": 0.1, "tasks": 2}, "steps": {}, "samples": r})
    assert f"novelty {r['novelty']:.2f} (real {r['novelty_real']:.2f})" in text
    assert f"validity {r['validity']:.2f} (real 1.00)" in text
    method = {"nll": {"unconditional": {"nll_nats": 1.0}, "steps": {"0": {"5": {"nll_nats": 1.0, "ci95": 0.1}}}},
              "text_quality": {"0": r}}
    md = results_markdown({"shots": [5], "steps": [0], "held_out_tasks": 2, "eval_data": "x", "data": "x",
                           "train_steps": 1, "methods": {"a": method}})
    assert f"| {_fmt(r, 'novelty')} ({_fmt(r, 'novelty_real')}) | {_fmt(r, 'validity')} (1) |" in md
