"""The generator contract for TextTransformer (see fewgen.models.base), plus what is its own:
the packed every-K loss, the key-value cache and the match cache."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from torch.func import grad, vmap

from fewgen.config import EvalConfig, ModelConfig, TrainConfig
from fewgen.errors import ConfigError, DataError
from fewgen.meta import get_algorithm
from fewgen.metrics.text import validity
from fewgen.models import build_model
from fewgen.models.base import call, params_of
from fewgen.models.bytes import BOS, EOS, PAD, decode_batch, encode_batch, tokenizer_meta
from fewgen.models.text_transformer import TextTransformer, build_text_transformer
from fewgen.tasks.base import Episode

WORDS = ["ĉirkaŭ", "ŝipo", "ĝardeno", "мир", "漢字", "hello", "a", "ðoʊ", "hell", "ŝipoj", "ĉiro", "helo"]


def tiny(seed=0, match_order=3, track=True):
    torch.manual_seed(seed)
    m = TextTransformer(d_model=16, layers=2, heads=2, max_len=12, window=128, train_window=96,
                        match_order=match_order, track=track)
    if match_order >= 0:
        with torch.no_grad():  # cache weights that depend on the state and the evidence (they start at zero)
            m.gate.weight.normal_(0.0, 0.3)
            m.cache_logits.weight.normal_(0.0, 0.3)
    return m


def episode():
    ids = encode_batch(WORDS, 12)  # (12, 12)
    support = ids[:8].reshape(2, 4, 12)  # (T=2, K=4, L)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    query = ids[8:].reshape(2, 2, 12)
    return support, mask, query


def test_functional_call_equals_module_call():
    m, (s, mask, q) = tiny(), episode()
    p = params_of(m)
    c = m.context(s, mask)
    assert torch.equal(call(m, p, "context", s, mask)["prefix"], c["prefix"])
    assert torch.equal(call(m, p, "loss", q, c, None), m.loss(q, c, None))
    assert torch.equal(call(m, p, "nll", q, c, 1, 1, None), m.nll(q, c, 1, 1, None))
    assert torch.equal(call(m, p, "episode_loss", s, mask, q, None), m.episode_loss(s, mask, q, None))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(call(m, p, "sample", 5, c, g1), m.sample(5, c, g2))
    p2 = {k: v + 0.1 for k, v in p.items()}  # other parameters really are used
    assert not torch.allclose(call(m, p2, "loss", q, c, None), m.loss(q, c, None))


def test_save_load_round_trips_exactly(tmp_path):
    m, (s, mask, q) = tiny(), episode()
    save_file(m.state_dict(), str(tmp_path / "model.safetensors"))
    m2 = TextTransformer(**m.config_dict())
    m2.load_state_dict(load_file(str(tmp_path / "model.safetensors")))
    c = m.context(s, mask)
    assert torch.equal(m2.context(s, mask)["prefix"], c["prefix"])
    assert torch.equal(m2.loss(q, c), m.loss(q, c))
    assert torch.equal(m2.sample(3, c, torch.Generator().manual_seed(0)), m.sample(3, c, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("match_order,track", [(-1, False), (0, True), (3, True), (3, False)])
def test_loss_is_the_exact_nll_of_the_prefixed_string(match_order, track):
    m, (s, mask, q) = tiny(match_order=match_order, track=track), episode()
    c = m.context(s, mask)
    shot = [i for i in s[1, 0].tolist() if i != PAD]  # task 1 has one shot: its bytes, then EOS
    assert c["prefix"][1].tolist() == [BOS, *shot] + [PAD] * (c["prefix"].shape[1] - 1 - len(shot))
    full = m.loss(q, c)
    assert full.shape == (2, 2) and (full > 0).all()
    logp = m._query_log_probs(q, c)  # (T, N, L, 257): each row a distribution
    assert torch.allclose(logp.exp().sum(-1), torch.ones(2, 2, 12), atol=1e-5)
    ids = q[0, 1]
    n = int((ids != PAD).sum())
    assert torch.allclose(-logp[0, 1, torch.arange(n), ids[:n]].sum(), full[0, 1], atol=1e-5)
    wider = torch.cat([q, torch.full((2, 2, 5), PAD)], -1)  # padding width does not matter
    assert torch.allclose(m.loss(wider, c), full, atol=1e-5)
    assert torch.allclose(m.nll(q, c, 1, 1), full, atol=1e-5)  # chunking does not either


@pytest.mark.parametrize("match_order,track", [(-1, False), (3, True), (3, False)])
def test_packed_every_k_loss_equals_the_explicit_prefix_loss(match_order, track):
    """Query j of an episode is scored given the present shots and queries 0..j-1: for every j
    (i.e. every K), the packed pass equals loss(query_j | context(those strings))."""
    m, (s, mask, q) = tiny(match_order=match_order, track=track), episode()
    packed = m.episode_loss(s, mask, q)  # (T, Q)
    assert packed.shape == (2, 2)
    for t in range(2):
        for j in range(2):
            before = torch.cat([s[t][mask[t]], q[t, :j]])[None]  # K = shots + j strings
            ctx = m.context(before, torch.ones(before.shape[:2], dtype=torch.bool))
            assert torch.allclose(packed[t, j], m.loss(q[t : t + 1, j : j + 1], ctx)[0, 0], atol=1e-4), (t, j)
    # With no shots at all, string j is scored given strings 0..j-1 (K = 0 for the first).
    none = m.episode_loss(s[:, :0], mask[:, :0], q)
    empty = m.context(s[:, :1], torch.zeros_like(mask[:, :1]))
    assert torch.allclose(none[:, 0], m.loss(q[:, :1], empty)[:, 0], atol=1e-4)


def test_the_base_episode_loss_is_context_then_loss():
    from fewgen.models.base import GenerativeModel

    m, (s, mask, q) = tiny(), episode()
    base = GenerativeModel.episode_loss(m, s, mask, q, None)
    assert torch.allclose(base, m.loss(q, m.context(s, mask)))


@pytest.mark.parametrize("match_order,track", [(-1, False), (3, True), (3, False)])
def test_kv_cached_decoding_gives_the_full_recompute_distribution(match_order, track):
    m, (s, mask, q) = tiny(match_order=match_order, track=track), episode()
    c = m.context(s, mask)
    full = m._query_log_probs(q, c).reshape(4, 12, -1)  # teacher forcing over prefix + string
    state, tok = m._start(c, 2, 12)  # 2 strings per task: rows are the 4 queries in order
    assert tok.tolist() == [EOS] * 4  # the prefix's separator is the first input
    forced = q.reshape(4, 12)
    length = (forced != PAD).sum(1)
    for t in range(12):
        step = m._step(state, tok)
        live = t < length
        assert torch.allclose(step[live], full[:, t][live], atol=1e-5), t
        tok = forced[:, t]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), temperature=st.sampled_from([0.0, 0.7, 1.0, 3.0]),
       top_p=st.sampled_from([1.0, 0.9]), max_len=st.integers(2, 12), bias=st.integers(0, 255))
def test_constrained_decoding_always_yields_valid_utf8(seed, temperature, top_p, max_len, bias):
    """Whatever the weights prefer (here: one random byte, e.g. a stray continuation byte or a
    control character, pushed far up), every sample is valid, non-empty UTF-8 that ends in
    max_len and re-encodes to exactly its ids."""
    m, (s, mask, _) = tiny(seed % 1000), episode()
    with torch.no_grad():
        m.embed.weight[bias] += 3.0 * m.ln_f.weight.sign()  # tied head: byte `bias` dominates the logits
    x = m.sample(8, m.context(s, mask), torch.Generator().manual_seed(seed), temperature, max_len, top_p)
    assert x.shape == (2, 8, max_len)
    assert ((x == EOS).sum(-1) == 1).all()
    texts = [t for task in decode_batch(x) for t in task]
    assert validity(texts) == 1.0 and all(texts)
    assert encode_batch(texts, max_len).tolist() == x.reshape(16, max_len).tolist()


def test_order_matters_and_is_declared_but_masked_shots_are_ignored():
    m, (s, mask, q) = tiny(), episode()
    assert TextTransformer.permutation_invariant is False
    full = torch.ones_like(mask)
    assert not torch.allclose(m.loss(q, m.context(s.flip(1), full)), m.loss(q, m.context(s, full)))
    junk = s.clone()
    junk[~mask] = encode_batch(["zzzz"], 12)[0]
    assert torch.equal(m.context(junk, mask)["prefix"], m.context(s, mask)["prefix"])
    empty = m.context(s, torch.zeros_like(mask))
    assert empty["prefix"].tolist() == [[BOS], [BOS]]
    one = m.context(s[1:], torch.zeros_like(mask[1:]))  # the empty set of another task: the same context
    assert torch.allclose(m.loss(q[:1], one), m.loss(q, empty)[:1])


def test_a_support_larger_than_the_window_is_refused_with_the_limit():
    m = tiny()
    s = encode_batch(["abcdefghij"] * 12, 12)[None]  # 12 x 11 bytes > 128 - 12
    with pytest.raises(DataError, match="at most 116"):
        m.context(s, torch.ones(1, 12, dtype=torch.bool))
    assert m.context(s[:, :9], torch.ones(1, 9, dtype=torch.bool))["prefix"].shape == (1, 100)


def test_grad_and_vmap_over_tasks_equal_the_loop():
    m, (s, mask, q) = tiny(), episode()
    p = {k: v.detach() for k, v in params_of(m).items()}

    def task_loss(params, sup, msk, qry):  # one task, as vmap sees it
        c = call(m, params, "context", sup[None], msk[None])
        return call(m, params, "loss", qry[None], c, None).mean()

    grads = vmap(grad(task_loss), in_dims=(None, 0, 0, 0))(p, s, mask, q)
    for i in range(2):
        loop = grad(task_loss)(p, s[i], mask[i], q[i])
        for k in p:
            assert torch.allclose(grads[k][i], loop[k], atol=1e-5), k


@pytest.mark.parametrize("algo", ["amortized", "maml", "fomaml", "hybrid", "reptile", "transfer"])
def test_every_algorithm_trains_it(algo):
    m, (s, mask, q) = tiny(), episode()
    cfg = TrainConfig(algo=algo, inner_steps=1, inner_lr=1e-2, task_chunk=1)
    a = get_algorithm(cfg)
    params = params_of(m)
    ep = Episode(s, mask, q, ("a", "b"))
    loss = a.meta_loss(m, params, a.algo_params(m), ep, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    if loss.requires_grad:  # reptile computes its own update
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.blocks[0].parameters())


def test_a_match_cache_alone_copies_the_support_ngrams():
    """Driven by the highest cache order alone (gate saturated), every (3 bytes of history ->
    next) step of every sample occurs in that task's support: the copy mechanism works from
    step one, before any training."""
    m, (s, mask, _) = tiny(match_order=3), episode()
    with torch.no_grad():
        m.gate.weight.zero_()
        m.cache_logits.weight.zero_()
        m.gate.bias.copy_(torch.tensor([-50.0, -50.0, -50.0, -50.0, 50.0]))
    import fewgen.models.text_cache as cache

    old, cache.MATCH_BETA = cache.MATCH_BETA, 1e-12  # no back-off mass
    try:
        x = m.sample(40, m.context(s, mask), torch.Generator().manual_seed(0))
    finally:
        cache.MATCH_BETA = old
    for t in range(2):
        allowed = set().union(*(_ngrams(s[t, k].tolist(), 3) for k in range(4) if mask[t, k]))
        for row in x[t].tolist():
            assert _ngrams(row, 3) <= allowed, row


def _ngrams(ids, n):
    seq = [BOS] * n + [i for i in ids if i != PAD]
    return {tuple(seq[j - n : j + 1]) for j in range(n, len(seq))}


def test_build_from_config():
    m = build_model(ModelConfig(family="text_transformer", hidden=16, extra={"layers": 1, "heads": 2}),
                    tokenizer_meta(20))
    assert isinstance(m, TextTransformer) and m.family == "text_transformer" and m.modality == "text"
    assert m.config_dict() == {"d_model": 16, "layers": 1, "heads": 2, "max_len": 20, "window": 1024,
                               "train_window": 256, "match_order": 4, "track": True}
    with pytest.raises(ConfigError, match="model.extra.bogus"):
        build_text_transformer(ModelConfig(extra={"bogus": 1}), tokenizer_meta(20))
    with pytest.raises(ConfigError, match="multiple of"):
        build_text_transformer(ModelConfig(hidden=18, extra={"heads": 4}), tokenizer_meta(20))
    with pytest.raises(ConfigError, match="match_order"):
        build_text_transformer(ModelConfig(hidden=16, extra={"match_order": 9}), tokenizer_meta(20))


def test_guided_sampling_draws_from_the_guided_plausible_distribution(monkeypatch):
    """Guidance g: the first byte is drawn from log p(.|-) + g (log p(.|support) - log p(.|-)),
    over the legal bytes the conditional model gives at least GUIDANCE_PLAUSIBLE x its top one."""
    import math

    import fewgen.models.text_transformer as tt

    m, (s, mask, q) = tiny(), episode()
    c = m.context(s, mask)
    seen = []
    real_draw = tt.draw_token
    monkeypatch.setattr(tt, "draw_token", lambda logits, *a: seen.append(logits.clone()) or real_draw(logits, *a))
    x = m.sample(3, c, torch.Generator().manual_seed(0), guidance=2.5)
    assert x.shape == (2, 3, 12) and validity([w for t in decode_batch(x) for w in t]) == 1.0
    cond = m._query_log_probs(q[:, :1], c)[:, 0, 0]  # (T, V): the first byte given the support
    empty = m.context(s, torch.zeros_like(mask))
    uncond = m._query_log_probs(q[:, :1], empty)[:, 0, 0]
    want = uncond + 2.5 * (cond - uncond)
    legal = tt.legal_tokens(torch.zeros(2, dtype=torch.long), 0, 12)  # the first byte of a string
    top = cond.masked_fill(~legal, float("-inf")).max(-1, keepdim=True).values
    want = want.masked_fill(~(legal & (cond >= top + math.log(tt.GUIDANCE_PLAUSIBLE))), float("-inf"))
    got = seen[0].reshape(2, 3, -1)
    for t in range(2):
        for j in range(3):
            assert torch.equal(torch.isinf(got[t, j]), torch.isinf(want[t]))
            ok = ~torch.isinf(want[t])
            assert torch.allclose(got[t, j][ok], want[t][ok], atol=1e-4)
    default = m.sample(3, c, torch.Generator().manual_seed(0))  # the eval config's guidance, as the CLI samples
    assert torch.equal(m.sample(3, c, torch.Generator().manual_seed(0), guidance=EvalConfig().text_guidance), default)
