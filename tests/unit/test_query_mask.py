"""Tasks with fewer than K + Q examples (issue 17): they get the queries they have, marked by
``Episode.query_mask``, and every algorithm's query loss averages over present queries only."""

from __future__ import annotations

import pytest
import torch

from fewgen.config import TrainConfig
from fewgen.errors import DataError
from fewgen.meta import get_algorithm
from fewgen.models import params_of
from fewgen.models.toy_gauss import ToyGauss
from fewgen.tasks.base import Episode, TaskSet


def numbered_tasks(counts: list[int]) -> TaskSet:
    """Task i's examples are the distinct 1-D points 100 i + j, so every drawn example is traceable."""
    return TaskSet.from_lists([f"t{i}" for i in range(len(counts))], [f"g{i}" for i in range(len(counts))],
                              [100.0 * i + torch.arange(n, dtype=torch.float32)[:, None] for i, n in enumerate(counts)],
                              "toy")


def test_short_tasks_get_the_queries_they_have():
    ts = numbered_tasks([3, 6, 20])
    ep = ts.sample_episode(seed=1, index=4, num_tasks=3, shots=2, queries=10, min_shots=0, min_queries=1)
    assert ep.query.shape == (3, 10, 1) and ep.query_mask.shape == (3, 10) and ep.query_mask.dtype == torch.bool
    for t, name in enumerate(ep.names):
        n = int(ts.counts[ts.index(name)])
        present = ep.query_mask[t]
        assert present.tolist() == [j < min(10, n - 2) for j in range(10)]  # present slots come first
        drawn = torch.cat([ep.support[t], ep.query[t][present]])[:, 0]
        assert len(set(drawn.tolist())) == len(drawn) == min(12, n)  # distinct examples of the task
        assert ((ep.query[t] // 100) == ts.index(name)).all()  # missing slots also hold its own examples
        assert torch.equal(ep.task(t).query, ep.query[t][present])
    again = ts.sample_episode(seed=1, index=4, num_tasks=3, shots=2, queries=10, min_shots=0, min_queries=1)
    assert torch.equal(ep.query, again.query) and torch.equal(ep.query_mask, again.query_mask)
    with pytest.raises(DataError, match="has 3 examples; 12 are needed"):  # without min_queries: as before
        ts.sample_episode(seed=1, index=4, num_tasks=3, shots=2, queries=10)
    with pytest.raises(DataError, match="has 3 examples; 4 are needed"):
        ts.sample_episode(seed=1, index=4, num_tasks=3, shots=3, queries=10, min_queries=1)


def test_tasks_with_enough_examples_draw_exactly_as_before():
    ts = numbered_tasks([12, 15, 30, 13])
    for index in range(5):
        old = ts.sample_episode(seed=2, index=index, num_tasks=3, shots=2, queries=10, min_shots=0)
        new = ts.sample_episode(seed=2, index=index, num_tasks=3, shots=2, queries=10, min_shots=0, min_queries=1)
        assert new.names == old.names and bool(new.query_mask.all()) and bool(old.query_mask.all())
        assert torch.equal(new.support, old.support) and torch.equal(new.support_mask, old.support_mask)
        assert torch.equal(new.query, old.query)


ALGOS = [("amortized", {}), ("maml", {}), ("fomaml", {}), ("reptile", {}), ("hybrid", {}), ("transfer", {})]


def short_episode() -> Episode:
    g = torch.Generator().manual_seed(0)
    support = 3 * torch.randn(3, 4, 2, generator=g)
    support_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    query_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    return Episode(support, support_mask, 3 * torch.randn(3, 5, 2, generator=g), ("a", "b", "c"), query_mask)


def loss_and_grads(algo: str, cfg: dict, ep: Episode) -> tuple[torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(0)
    model = ToyGauss(dim=2, hidden=16, context=8, scale=3.0)
    a = get_algorithm(TrainConfig(algo=algo, inner_steps=2, inner_lr=0.01, **cfg))
    params = params_of(model)
    loss = a.meta_loss(model, params, {}, ep, torch.Generator().manual_seed(5))
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return loss.detach(), [torch.zeros(()) if g is None else g for g in grads]


@pytest.mark.parametrize("algo,cfg", ALGOS)
def test_missing_queries_do_not_count(algo, cfg):
    ep = short_episode()
    garbage = torch.where(ep.query_mask[..., None], ep.query, torch.full_like(ep.query, 1e3))
    loss, grads = loss_and_grads(algo, cfg, ep)
    loss2, grads2 = loss_and_grads(algo, cfg, Episode(ep.support, ep.support_mask, garbage, ep.names, ep.query_mask))
    assert torch.isfinite(loss) and torch.equal(loss, loss2)
    assert all(torch.equal(x, y) for x, y in zip(grads, grads2))


@pytest.mark.parametrize("algo,cfg", ALGOS)
def test_query_loss_is_the_mean_over_present_queries(algo, cfg):
    """The episode's loss from one-task episodes holding only the present queries: a mean over
    tasks (gradient-based: each task's own query mean), or over every present example (amortized,
    whose loss is one mean over the meta-batch's queries; transfer, over supports and queries)."""
    ep = short_episode()
    per_task, weights = [], []
    for t in range(ep.num_tasks):
        q = ep.query_mask[t]
        one = Episode(ep.support[t : t + 1], ep.support_mask[t : t + 1], ep.query[t : t + 1, q], ep.names[t : t + 1])
        per_task.append(loss_and_grads(algo, cfg, one)[0])
        weights.append(float(q.sum() + (ep.support_mask[t].sum() if algo == "transfer" else 0)))
    w = torch.tensor(weights) if algo in ("amortized", "transfer") else torch.ones(ep.num_tasks)
    expected = (torch.stack(per_task) * w).sum() / w.sum()
    assert torch.allclose(loss_and_grads(algo, cfg, ep)[0], expected, rtol=1e-5)


def test_query_mean_of_a_full_mask_is_the_plain_mean_bit_for_bit():
    from fewgen.meta.base import query_mean

    g = torch.Generator().manual_seed(0)
    for shape in ((16, 10), (3, 7), (1, 1), (40, 33)):
        w = torch.randn(shape[1], requires_grad=True)
        per_example = (torch.randn(*shape, shape[1], generator=g) @ w).pow(2) * 100  # (T, Q)
        full = torch.ones(shape, dtype=torch.bool)
        a, b = per_example.mean(), query_mean(per_example, full)
        assert torch.equal(a, b)
        assert torch.equal(torch.autograd.grad(a, w, retain_graph=True)[0], torch.autograd.grad(b, w)[0])
