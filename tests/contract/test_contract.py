"""The model contract (contract v2, see fewgen.models.base and docs/design-notes.md), once for
every family. A family is one line in ``families.FAMILIES``; these tests then hold for it:

- the context is a dict of tensors with a leading task axis; functional call equals module call
  for every method, and other parameters change the output;
- the context ignores masked-out shots, is invariant to the shots' order where the family says
  so, and the empty set (K = 0) means the same as K slots that are all absent;
- ``nll`` is deterministic given a generator and does not depend on ``chunk``;
- ``sample`` has the right shape, dtype and range and is seeded;
- every algorithm's meta-loss (and gradient) is the same vmapped and looped, and in task chunks;
- a checkpoint round-trips exactly, and an adapted checkpoint reproduces the adapter's samples.
"""

from __future__ import annotations

import pytest
import torch
from families import FAMILIES, Family

from fewgen import checkpoint
from fewgen.adaptation import adapted_sample, adapter_for_checkpoint, save_adapted
from fewgen.config import EvalConfig, TrainConfig
from fewgen.meta import get_algorithm
from fewgen.models import call, params_of

NAMES = list(FAMILIES)
_CACHE: dict[str, Family] = {}


def family(name: str) -> Family:
    if name not in _CACHE:
        _CACHE[name] = FAMILIES[name]()
    return _CACHE[name]


def assert_context_close(a: dict, b: dict, atol: float = 0.0) -> None:
    assert isinstance(a, dict) and set(a) == set(b)
    for k in a:
        assert a[k].shape == b[k].shape and a[k].dtype == b[k].dtype, k
        assert (torch.equal(a[k], b[k]) if atol == 0 else torch.allclose(a[k], b[k], atol=atol)), k


# ----------------------------------------------------------------------------- functional calls
@pytest.mark.parametrize("name", NAMES)
def test_context_is_a_dict_of_tensors_with_a_task_axis(name):
    f = family(name)
    ep = f.episode
    ctx = f.model.context(ep.support, ep.support_mask)
    assert isinstance(ctx, dict) and ctx
    for k, v in ctx.items():
        assert isinstance(k, str) and isinstance(v, torch.Tensor) and v.shape[0] == ep.num_tasks, k


@pytest.mark.parametrize("name", NAMES)
def test_functional_call_equals_module_call(name):
    f = family(name)
    m, ep, p = f.model, f.episode, params_of(f.model)
    c = m.context(ep.support, ep.support_mask)
    assert_context_close(call(m, p, "context", ep.support, ep.support_mask), c)
    noise = m.draw_noise(ep.query, torch.Generator().manual_seed(0))
    loss = m.loss(ep.query, c, noise)
    assert loss.shape == ep.query.shape[:2] and torch.isfinite(loss).all()
    assert torch.equal(call(m, p, "loss", ep.query, c, noise), loss)
    assert torch.equal(call(m, p, "episode_loss", ep.support, ep.support_mask, ep.query, noise),
                       m.episode_loss(ep.support, ep.support_mask, ep.query, noise))
    n1 = m.nll(ep.query, c, 6, 4, torch.Generator().manual_seed(2))
    assert torch.equal(call(m, p, "nll", ep.query, c, 6, 4, torch.Generator().manual_seed(2)), n1)
    s1 = m.sample(3, c, torch.Generator().manual_seed(3))
    assert torch.equal(call(m, p, "sample", 3, c, torch.Generator().manual_seed(3)), s1)
    other = {k: v + 0.1 for k, v in p.items()}
    assert not torch.allclose(call(m, other, "loss", ep.query, call(m, other, "context", ep.support, ep.support_mask),
                                   noise), loss)


# ----------------------------------------------------------------------------- the support set
@pytest.mark.parametrize("name", NAMES)
def test_context_ignores_masked_shots_and_is_order_invariant_where_declared(name):
    f = family(name)
    m, ep = f.model, f.episode
    sup, mask = ep.support, ep.support_mask
    c = m.context(sup, mask)
    junk = sup.clone()
    junk[~mask] = sup.flip(0)[~mask]  # absent slots hold other data: nothing may change
    assert_context_close(m.context(junk, mask), c, atol=1e-6)
    if m.permutation_invariant:
        perm = torch.randperm(sup.shape[1], generator=torch.Generator().manual_seed(0))
        assert_context_close(m.context(sup[:, perm], mask[:, perm]), c, atol=1e-5)
    else:  # a family that reads its support in order says why in its docstring
        assert "order" in (type(m).__doc__ or "") + (type(m).context.__doc__ or "")


@pytest.mark.parametrize("name", NAMES)
def test_empty_support_is_k_absent_slots(name):
    f = family(name)
    m, ep = f.model, f.episode
    empty = m.context(ep.support[:, :0], ep.support_mask[:, :0])
    absent = m.context(ep.support, torch.zeros_like(ep.support_mask))
    noise = m.draw_noise(ep.query, torch.Generator().manual_seed(0))
    assert torch.allclose(m.loss(ep.query, empty, noise), m.loss(ep.query, absent, noise), atol=1e-5)
    full = m.context(ep.support, ep.support_mask)
    assert not torch.allclose(m.loss(ep.query, full, noise), m.loss(ep.query, empty, noise))


# ----------------------------------------------------------------------------- nll and samples
@pytest.mark.parametrize("name", NAMES)
def test_nll_is_deterministic_and_chunk_independent(name):
    f = family(name)
    m, ep = f.model, f.episode
    c = m.context(ep.support, ep.support_mask)
    with torch.no_grad():
        a = m.nll(ep.query, c, 8, 3, torch.Generator().manual_seed(4))
        b = m.nll(ep.query, c, 8, 3, torch.Generator().manual_seed(4))
        d = m.nll(ep.query, c, 8, 8, torch.Generator().manual_seed(4))
    assert a.shape == ep.query.shape[:2] and torch.isfinite(a).all() and torch.equal(a, b)
    assert torch.allclose(a, d, atol=1e-4)
    if f.exact_nll:  # no latent: the NLL is the training loss
        assert torch.allclose(a, m.loss(ep.query, c, m.draw_noise(ep.query, None)), atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_sample_shape_dtype_range_and_seed(name):
    f = family(name)
    m, ep = f.model, f.episode
    c = m.context(ep.support, ep.support_mask)
    with torch.no_grad():
        s = m.sample(5, c, torch.Generator().manual_seed(1))
    assert s.shape == (ep.num_tasks, 5, *ep.query.shape[2:]) and s.dtype == ep.query.dtype
    if m.modality == "image":
        assert 0 <= float(s.min()) and float(s.max()) <= 1
    assert torch.equal(s, m.sample(5, c, torch.Generator().manual_seed(1)))
    assert not torch.equal(s, m.sample(5, c, torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("name", NAMES)
def test_sample_defaults_are_the_eval_configs(name):
    """One place for sampling defaults: ``sample`` with no options samples as the eval config's
    defaults choose (the CLI's), and a changed eval config reaches ``sample`` through ``sample_options``."""
    import inspect

    f = family(name)
    m, ep = f.model, f.episode
    opts = m.sample_options(EvalConfig())
    params = inspect.signature(m.sample).parameters
    assert all(k in params and params[k].default == v for k, v in opts.items()), (opts, params)
    c = m.context(ep.support, ep.support_mask)
    with torch.no_grad():
        assert torch.equal(m.sample(3, c, torch.Generator().manual_seed(4)),
                           m.sample(3, c, torch.Generator().manual_seed(4), **opts))
    assert m.sampler_variants(EvalConfig())[0][1] == opts


# ----------------------------------------------------------------------------- algorithms
ALGOS = [("amortized", {}), ("maml", {}), ("fomaml", {}), ("reptile", {}), ("reptile", {"reptile_inner": "adam"}),
         ("hybrid", {}), ("hybrid", {"learn_inner_lr": True}), ("transfer", {}),
         ("maml", {"adapt_params": "film", "learn_inner_lr": True, "inner_select": "heldout"}),
         ("fomaml", {"adapt_params": "bias", "inner_steps_random": True}),
         ("reptile", {"adapt_params": "lora", "inner_select": "heldout"})]
HEAVY_ALGOS = {"amortized", "maml", "reptile", "hybrid"}  # the heavy families run these (keeps the suite fast)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("algo,cfg", ALGOS)
def test_vectorised_equals_looped(name, algo, cfg):
    f = family(name)
    if f.heavy and (algo not in HEAVY_ALGOS or cfg):
        # Adam's first step with beta1 = 0 is ~sign(g): float noise flips it where g ~ 0; Meta-SGD
        # changes nothing vmap-specific. Both are compared on the toy model.
        pytest.skip("compared on the light families only")
    model, ep = f.model, f.episode
    out = []
    for vectorize in (True, False):
        a = get_algorithm(TrainConfig(algo=algo, inner_steps=1 if f.heavy else 2, inner_lr=0.01, **cfg))
        a.vectorize = vectorize
        params = params_of(model)
        extra = {k: v.requires_grad_() for k, v in a.algo_params(model).items()}
        loss = a.meta_loss(model, params, extra, ep, torch.Generator().manual_seed(5))
        # Unconditional models never read the set encoder: its gradient is None (zero).
        out.append((loss.detach(), torch.autograd.grad(loss, [*params.values(), *extra.values()], allow_unused=True)))
    (l1, g1), (l2, g2) = out
    assert torch.isfinite(l1) and torch.allclose(l1, l2, rtol=1e-5, atol=1e-5)
    assert [x is None for x in g1] == [y is None for y in g2]
    # float32 rounding is relative to the scale of the whole gradient (a parameter whose true
    # gradient is 0, e.g. text_lm's cache gate given the empty set's uniform cache, gets noise)
    scale = max(1.0, max(float(y.abs().max()) for y in g2 if y is not None))
    for x, y in ((x, y) for x, y in zip(g1, g2) if x is not None):
        assert torch.allclose(x, y, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("algo,cfg", [("maml", {}), ("fomaml", {}), ("reptile", {}), ("hybrid", {"learn_inner_lr": True})])
def test_task_chunks_give_the_same_loss_and_gradient(name, algo, cfg):
    """train.task_chunk only bounds memory: 1 or 2 tasks per chunk = the whole meta-batch at once."""
    f = family(name)
    if f.heavy and algo not in ("maml", "reptile"):
        pytest.skip("the other algorithms are compared on the light families (keeps the suite fast)")
    model, ep = f.model, f.episode
    out = []
    for chunk in (0, 1, 2):
        a = get_algorithm(TrainConfig(algo=algo, inner_steps=1, inner_lr=0.01, task_chunk=chunk, **cfg))
        params = params_of(model)
        extra = {k: v.requires_grad_() for k, v in a.algo_params(model).items()}
        loss = a.meta_loss(model, params, extra, ep, torch.Generator().manual_seed(5))
        out.append((loss.detach(), torch.autograd.grad(loss, [*params.values(), *extra.values()], allow_unused=True)))
    (l0, g0) = out[0]
    for l1, g1 in out[1:]:
        assert torch.allclose(l0, l1, rtol=1e-6, atol=1e-6)
        assert [x is None for x in g0] == [y is None for y in g1]
        flat0 = torch.cat([x.flatten() for x in g0 if x is not None])
        flat1 = torch.cat([y.flatten() for y in g1 if y is not None])
        # float32 sums in another order: equal up to rounding relative to the gradient's scale
        assert float((flat0 - flat1).norm()) <= 1e-4 * float(flat0.norm())
        assert float((flat0 - flat1).abs().max()) <= 1e-4 * float(flat0.abs().max())


# ----------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip_is_exact(name, tmp_path):
    f = family(name)
    m, ep = f.model, f.episode
    checkpoint.save(tmp_path / "ck", m, f.config, {"algo": "amortized"})
    ck = checkpoint.load(tmp_path / "ck")
    assert ck.config == f.config and ck.model.family == m.family
    for (k, v), (k2, v2) in zip(m.state_dict().items(), ck.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    c = m.context(ep.support, ep.support_mask)
    assert_context_close(ck.model.context(ep.support, ep.support_mask), c)
    noise = m.draw_noise(ep.query, torch.Generator().manual_seed(0))
    assert torch.equal(ck.model.loss(ep.query, c, noise), m.loss(ep.query, c, noise))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("algo,steps", [("amortized", 0), ("maml", 1)])
def test_adapted_checkpoint_reproduces_the_adapters_samples(name, algo, steps, tmp_path):
    f = family(name)
    ep = f.episode
    checkpoint.save(tmp_path / "ck", f.model, f.config, {"algo": algo})
    ck = checkpoint.load(tmp_path / "ck")
    adapted = adapter_for_checkpoint(ck, seed=0)(ep.support[1:2], ep.support_mask[1:2], steps).task(0)
    save_adapted(ck, adapted, tmp_path / "adapted", {"algo": algo, "steps": steps})
    again = checkpoint.load(tmp_path / "adapted")
    stored = adapter_for_checkpoint(again, seed=0)(ep.support[1:2], ep.support_mask[1:2], 0)
    assert_context_close(stored.context, adapted.context)
    opts = f.model.sample_options(EvalConfig())
    want = adapted_sample(adapted, 4, torch.Generator().manual_seed(7), **opts)
    assert torch.equal(adapted_sample(stored, 4, torch.Generator().manual_seed(7), **opts), want)


def test_chunked_meta_loss_without_autograd_is_just_the_value():
    f = family("toy_gauss")
    model, ep = f.model, f.episode
    a = get_algorithm(TrainConfig(algo="maml", inner_steps=1, inner_lr=0.01, task_chunk=1))
    ref = get_algorithm(TrainConfig(algo="maml", inner_steps=1, inner_lr=0.01, task_chunk=0))
    with torch.no_grad():
        v = a.meta_loss(model, params_of(model), {}, ep, torch.Generator().manual_seed(5))
    r = ref.meta_loss(model, params_of(model), {}, ep, torch.Generator().manual_seed(5))
    assert not v.requires_grad and torch.allclose(v, r.detach(), rtol=1e-6)
