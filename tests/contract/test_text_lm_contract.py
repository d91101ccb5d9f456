"""The generator contract for TextLM (see fewgen.models.base)."""

import pytest
import torch
from torch.func import grad, vmap

from fewgen.config import ModelConfig
from fewgen.errors import ConfigError
from fewgen.metrics.text import validity
from fewgen.models.base import call, params_of
from fewgen.models.bytes import BOS, EOS, PAD, decode_batch, encode_batch, tokenizer_meta
from fewgen.models.text_lm import _shift_in, TextLM, build_text_lm

WORDS = ["ĉirkaŭ", "ŝipo", "ĝardeno", "мир", "漢字", "hello", "a", "ðoʊ"]


def tiny(seed=0, match_orders=(2, 3)):
    torch.manual_seed(seed)
    return TextLM(hidden=16, context=12, embed=8, max_len=12, match_orders=match_orders)


def episode():
    ids = encode_batch(WORDS, 12)  # (8, 12)
    support = ids.reshape(2, 4, 12)  # (T=2, K=4, L)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    query = ids.flip(0).reshape(2, 4, 12)
    return support, mask, query


def test_loss_is_exact_nll_and_chunking_does_not_change_it():
    m, (s, mask, q) = tiny(), episode()
    c = m.context(s, mask)
    full = m.loss(q, c, m.draw_noise(q, None))
    assert full.shape == (2, 4) and (full > 0).all()
    assert torch.allclose(m.nll(q, c, 100, 1, None), full, atol=1e-5)
    # By hand: sum of next-token log-probs of one string, EOS included, PAD ignored.
    logp = torch.log_softmax(m._logits(q, c), -1)[0, 0]
    ids = q[0, 0]
    n = int((ids != PAD).sum())
    assert ids[n - 1] == EOS
    assert torch.allclose(-logp[torch.arange(n), ids[:n]].sum(), full[0, 0], atol=1e-5)
    # Padding width does not matter.
    wider = torch.cat([q, torch.full((2, 4, 5), PAD)], -1)
    assert torch.allclose(m.loss(wider, c), full, atol=1e-5)


def close(a, b, atol=1e-5):
    return set(a) == set(b) and all(torch.allclose(a[k].double(), b[k].double(), atol=atol) for k in a)


def test_context_is_permutation_invariant_and_ignores_masked_shots():
    m, (s, mask, _) = tiny(), episode()
    c = m.context(s, mask)
    perm = torch.tensor([2, 0, 1, 3])  # only present shots move in task 0; task 1 keeps shot 0 first
    s2, mask2 = s[:, perm], mask[:, perm]
    s2[1] = s[1]
    mask2[1] = mask[1]
    assert close(m.context(s2, mask2), c)
    junk = s.clone()
    junk[~mask] = encode_batch(["zzzz"], 12)[0]
    assert close(m.context(junk, mask), c, atol=1e-6)
    # A different support really changes the context.
    full = torch.ones_like(mask)
    assert close(m.context(s.flip(1), full), m.context(s, full))  # flipping K permutes
    assert not close(m.context(s.flip(0), full), m.context(s, full))


def test_empty_support_gives_one_unconditional_context():
    m, (s, mask, q) = tiny(), episode()
    c = m.context(s, torch.zeros_like(mask))
    assert set(c) == {"learned", "log_unigram", "log_bigram", "support_ids"}
    assert c["learned"].shape == (2, 12) and c["log_bigram"].shape == (2, 257, 257)
    assert c["support_ids"].shape == (2, 4, 12) and (c["support_ids"] == PAD).all()  # the (absent) support ids
    assert all(torch.isfinite(v.double()).all() for v in c.values())
    assert close({k: v[0] for k, v in c.items()}, {k: v[1] for k, v in c.items()})
    assert torch.isfinite(m.loss(q, c)).all()


def test_sample_shape_and_valid_utf8():
    m, (s, mask, _) = tiny(), episode()
    c = m.context(s, mask)
    for temperature in (1.0, 3.0, 0.0):
        x = m.sample(50, c, torch.Generator().manual_seed(0), temperature)
        assert x.shape == (2, 50, 12) and x.dtype == torch.int64
        assert ((x == EOS).sum(-1) == 1).all()  # every sample ends within max_len
        texts = [t for task in decode_batch(x) for t in task]
        assert validity(texts) == 1.0
        assert encode_batch(texts, 12).tolist() == x.reshape(100, 12).tolist()  # no byte lost
    a = m.sample(4, c, torch.Generator().manual_seed(1))
    assert torch.equal(a, m.sample(4, c, torch.Generator().manual_seed(1)))


def test_grad_and_vmap_over_tasks():
    m, (s, mask, q) = tiny(), episode()
    p = {k: v.detach() for k, v in params_of(m).items()}

    def task_loss(params, sup, msk, qry):  # one task, as vmap sees it
        c = call(m, params, "context", sup[None], msk[None])
        return call(m, params, "loss", qry[None], c, None).mean()

    grads = vmap(grad(task_loss), in_dims=(None, 0, 0, 0))(p, s, mask, q)
    loop = [grad(task_loss)(p, s[i], mask[i], q[i]) for i in range(2)]
    for i in range(2):
        for k in p:
            assert torch.allclose(grads[k][i], loop[i][k], atol=1e-5)


def test_build_from_config():
    m = build_text_lm(ModelConfig(family="text_lm", hidden=16, context=8, extra={"embed": 4}), tokenizer_meta(20))
    assert m.config_dict() == {"hidden": 16, "context": 8, "embed": 4, "max_len": 20}  # no match cache by default
    assert TextLM(**m.config_dict()).match_orders == ()
    cached = build_text_lm(ModelConfig(family="text_lm", hidden=16, context=8, extra={"match_orders": 4}),
                           tokenizer_meta(20))
    assert cached.config_dict()["match_orders"] == [2, 3, 4] and TextLM(**cached.config_dict()).match_orders == (2, 3, 4)
    with pytest.raises(ConfigError, match="match_orders"):
        build_text_lm(ModelConfig(extra={"match_orders": 9}), tokenizer_meta(20))
    assert m.family == "text_lm" and m.modality == "text"
    with pytest.raises(ConfigError, match="model.extra.bogus"):
        build_text_lm(ModelConfig(extra={"bogus": 1}), tokenizer_meta(20))


def test_sampling_stays_valid_even_when_the_model_prefers_invalid_bytes():
    m, (s, mask, _) = tiny(), episode()
    with torch.no_grad():
        m.head.bias.fill_(-20.0)
        m.head.bias[0x80:0xC0] = 20.0  # stray continuation bytes
        m.head.bias[0xF5:0x100] = 20.0  # bytes that never occur in UTF-8
        m.head.bias[0x00:0x20] = 19.0  # control characters
        m.head.bias[0xE0] = 18.0  # needs two continuation bytes: must not start near the end
    x = m.sample(64, m.context(s, mask), torch.Generator().manual_seed(0))
    texts = [t for task in decode_batch(x) for t in task]
    assert validity(texts) == 1.0
    assert encode_batch(texts, 12).tolist() == x.reshape(128, 12).tolist()


def _ngrams(ids: list[int], n: int) -> set[tuple[int, ...]]:
    """(history of n inputs, next) pairs of one encoded string, BOS-padded like the model's."""
    seq = [BOS] * n + [i for i in ids if i != PAD]
    return {tuple(seq[j - n : j + 1]) for j in range(n, len(seq))}


def test_match_cache_is_the_backed_off_count_of_what_followed_the_same_history_in_the_support():
    m, (s, mask, q) = tiny(), episode()
    c = m.context(s, mask)
    got = m._teacher_match(_shift_in(q), c)[0][0].exp()  # order 2: (T, N, L, 257)
    bigram = c["log_bigram"].exp()
    checked = 0
    for t in range(2):
        followers: dict[tuple[int, ...], list[int]] = {}
        for k in range(4):
            if mask[t, k]:  # masked shots vote for nothing
                w = [i for i in s[t, k].tolist() if i != PAD]
                padded = [BOS, BOS] + w
                for j, nxt in enumerate(w):
                    followers.setdefault(tuple(padded[j : j + 2]), []).append(nxt)
        for i in range(4):
            w = [x for x in q[t, i].tolist() if x != PAD]
            padded = [BOS, BOS] + w
            for j in range(len(w)):
                hist = tuple(padded[j : j + 2])
                counts = torch.zeros(257)
                for nxt in followers.get(hist, []):
                    counts[nxt] += 1
                checked += bool(counts.sum())
                row = bigram[t, 256 if hist[-1] == BOS else hist[-1]]
                want = (counts + row) / (counts.sum() + 1.0)  # MATCH_BETA = 1 back-off to the bigram
                assert torch.allclose(got[t, i, j], want, atol=1e-5), (t, i, j)
    assert checked > 0  # some query histories do occur in the support


def test_samples_with_only_the_match_cache_are_made_of_support_ngrams(monkeypatch):
    """Sampling computes the match cache incrementally; driven by it alone (mixture weight ~1,
    no back-off mass), every (3 previous bytes -> next) step of every sample occurs in that
    task's support."""
    import fewgen.models.text_lm as text_lm

    monkeypatch.setattr(text_lm, "MATCH_BETA", 1e-12)
    m, (s, mask, _) = tiny(match_orders=(2, 3)), episode()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        m.match_gate.bias.fill_(50.0)
    x = m.sample(40, m.context(s, mask), torch.Generator().manual_seed(0))
    for t in range(2):
        allowed = set().union(*(_ngrams(s[t, k].tolist(), 3) for k in range(4) if mask[t, k]))
        for row in x[t].tolist():
            assert _ngrams(row, 3) <= allowed, row


def test_nucleus_sampling_keeps_the_head_of_the_distribution():
    m, (s, mask, _) = tiny(), episode()
    c = m.context(s, mask)
    greedy = m.sample(6, c, torch.Generator().manual_seed(0), 0.0)
    # A nucleus too small for anything but the most likely byte is greedy decoding.
    assert torch.equal(m.sample(6, c, torch.Generator().manual_seed(3), 1.0, None, 1e-6), greedy)
    x = m.sample(50, c, torch.Generator().manual_seed(4), 1.0, None, 0.9)
    assert validity([t for task in decode_batch(x) for t in task]) == 1.0
    assert not torch.equal(x, m.sample(50, c, torch.Generator().manual_seed(4)))  # the tail was cut somewhere
