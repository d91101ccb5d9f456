"""The generator contract for TextNgram (see fewgen.models.base) and its n-gram tables."""

import math
from collections import Counter

import pytest
import torch

from fewgen.checkpoint import load, save
from fewgen.config import Config, DataConfig, ModelConfig, replace
from fewgen.errors import ConfigError
from fewgen.metrics.text import validity
from fewgen.models import build_model, ngram
from fewgen.models.base import call, params_of
from fewgen.models.bytes import EOS, NUM_OUTPUTS, PAD, decode_batch, encode_batch
from fewgen.models.text_lm import _shift_in
from fewgen.models.text_ngram import TextNgram
from fewgen.tasks.spec import load_tasks

WORDS = ["ĉirkaŭ", "ŝipo", "ĝardeno", "мир", "漢字", "hello", "a", "ðoʊ"]
LANGS = "words:en,fr,de,es,it,pt,nl,sv,pl,ru,fi,tr"


@pytest.fixture(scope="module")
def fitted():
    """A background fit on 8 languages, lambda chosen on 2 others; 2 held out."""
    ts = load_tasks(LANGS, DataConfig(spec=LANGS, max_examples_per_task=300))
    by = {n: i for i, n in enumerate(ts.names)}
    train = ts.subset([by[n] for n in ("en", "fr", "de", "es", "it", "pt", "nl", "sv")])
    val, test = ts.subset([by["pl"], by["tr"]]), ts.subset([by["fi"], by["ru"]])
    m = TextNgram(order=3, max_len=24)
    info = m.fit_counts(*([ts.examples(i) for i in range(len(ts))] for ts in (train, val)))
    return m, info, test


def episode(L=12):
    ids = encode_batch(WORDS, L)  # (8, L)
    support = ids.reshape(2, 4, L)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    return support, mask, ids.flip(0).reshape(2, 4, L)


def test_tables_are_exact_witten_bell():
    """The tables against a plain-Python interpolated Witten-Bell bigram."""
    seqs = [[0, 1, 2, 1, 0], [2, 2, 1], [1, 0]]
    start, outputs = 3, 3
    hist, target = [[], []], []
    for s in seqs:
        for j, w in enumerate(s):
            hist[0].append(0)
            hist[1].append(s[j - 1] if j else start)
            target.append(w)
    t = ngram.fit([torch.tensor(h) for h in hist], torch.tensor(target), 4, outputs, "witten_bell", torch.float64)
    uni = Counter(target)
    p0 = {w: (uni[w] + len(uni) / outputs) / (len(target) + len(uni)) for w in range(outputs)}
    for h in range(4):
        after = Counter(w for hh, w in zip(hist[1], target) if hh == h)
        for w in range(outputs):
            n, types = sum(after.values()), len(after)
            want = (after[w] + types * p0[w]) / (n + types) if n else p0[w]
            got = ngram.log_prob(t, [torch.tensor(0), torch.tensor(h)], torch.tensor(w)).exp()
            assert math.isclose(float(got), want, rel_tol=1e-9)


@pytest.mark.parametrize("smoothing", ngram.SMOOTHING)
def test_interpolated_probabilities_sum_to_one(fitted, smoothing):
    _, _, test = fitted
    m2 = TextNgram(order=4, smoothing=smoothing)
    m2.set_tables(_fit(m2, test))
    m2.set_mixing(0.6, 2.0, 0.05)
    q = test.examples(0)[:5][None]  # (1, 5, L): histories of real words and of their ends
    s = test.examples(1)[:7][None]
    ctx = m2.context(s, torch.ones(1, 7, dtype=torch.bool))
    hist = [h.reshape(1, -1) for h in m2._histories(_shift_in(q))]
    every = torch.arange(NUM_OUTPUTS)
    bg = ngram.log_prob(m2.tables(), [h[..., None] for h in hist], every)  # (1, Q, O)
    sup = m2._support_log_probs(hist, ctx)
    for lp in (bg, sup, m2._mixed(bg, sup, ctx["shots"])):
        assert torch.allclose(lp.exp().sum(-1), torch.ones(lp.shape[:-1]), atol=1e-5)


def _fit(m, ts):
    x = torch.cat([ts.examples(i) for i in range(len(ts))])
    hist = [h[x != PAD] for h in m._histories(_shift_in(x))]
    return ngram.fit(hist, x[x != PAD].clamp(max=EOS), 259, NUM_OUTPUTS, m.smoothing)


def test_functional_call_nll_is_exact_and_deterministic(fitted):
    m, _, _ = fitted
    s, mask, q = episode()
    p = params_of(m)
    c = m.context(s, mask)
    full = m.loss(q, c)
    assert full.shape == (2, 4) and (full > 0).all()
    assert torch.equal(call(m, p, "loss", q, c, None), full)
    assert torch.equal(m.nll(q, c, 1, 1, None), full) and torch.equal(m.nll(q, c, 1, 3, None), full)
    wider = torch.cat([q, torch.full((2, 4, 5), PAD)], -1)
    assert torch.allclose(m.loss(wider, c), full, atol=1e-5)
    # The same string in a task of its own gives the same value (tasks do not mix).
    assert torch.allclose(m.loss(q[1:], {k: v[1:] for k, v in c.items()}), full[1:], atol=1e-6)


def test_fresh_model_is_the_support_ngram_alone():
    m = TextNgram(order=3)
    s, mask, q = episode()
    empty = m.context(s, torch.zeros_like(mask))
    tokens = torch.tensor([[len(w.encode()) + 1 for w in WORDS[::-1][:4]], [len(w.encode()) + 1 for w in WORDS[::-1][4:]]])
    assert torch.allclose(m.loss(q, empty), tokens * math.log(NUM_OUTPUTS), atol=1e-4)  # uniform over 257 outputs
    assert (m.loss(s, m.context(s, torch.ones_like(mask)))[:, :1] < tokens[:, :1] * math.log(NUM_OUTPUTS)).all()


def test_support_counts_lower_the_nll_of_its_language(fitted):
    m, info, test = fitted
    assert 0 < info["mix"][0] <= 1 and info["mix_chosen_on"] == "2 meta-val tasks"
    fi, ru = test.examples(0), test.examples(1)
    q = fi[50:100][None]
    own = m.loss(q, m.context(fi[:10][None], torch.ones(1, 10, dtype=torch.bool))).mean()
    other = m.loss(q, m.context(ru[:10][None], torch.ones(1, 10, dtype=torch.bool))).mean()
    none = m.loss(q, m.context(fi[:1][None], torch.zeros(1, 1, dtype=torch.bool))).mean()
    assert own < none and own < other


def test_samples_are_valid_utf8_and_seeded(fitted):
    m, _, test = fitted
    s = torch.stack([test.examples(0)[:10], test.examples(1)[:10]])
    c = m.context(s, torch.ones(2, 10, dtype=torch.bool))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = m.sample(40, c, g1, temperature=1.3)
    assert a.shape == (2, 40, 24) and torch.equal(a, m.sample(40, c, g2, temperature=1.3))
    strings = [x for row in decode_batch(a) for x in row]
    assert validity(strings) == 1.0
    assert validity([x for row in decode_batch(m.sample(20, c, g1, top_p=0.8, max_len=6)) for x in row]) == 1.0
    greedy = decode_batch(m.sample(3, c, None, temperature=0))
    assert len(set(greedy[0])) == 1


def test_save_load_round_trip(fitted, tmp_path):
    m, _, test = fitted
    cfg = replace(Config(), model={"family": "text_ngram", "extra": {"order": 3}})
    save(tmp_path / "ck", m, cfg, {"algo": "amortized"})
    back = load(tmp_path / "ck").model
    assert isinstance(back, TextNgram) and torch.equal(back.mix, m.mix)
    s, q = test.examples(0)[:5][None], test.examples(0)[5:20][None]
    c = m.context(s, torch.ones(1, 5, dtype=torch.bool))
    assert torch.equal(back.nll(q, c), m.nll(q, c))


def test_config_errors():
    meta = {"vocab_size": 259, "max_len": 24}
    for extra in ({"order": 0}, {"order": 9}, {"order": "three"}, {"order": 2.5}, {"smoothing": "add_one"},
                  {"hidden_size": 3}):
        with pytest.raises(ConfigError):
            build_model(ModelConfig(family="text_ngram", extra=extra), meta)
    m = build_model(ModelConfig(family="text_ngram", extra={"order": 2, "smoothing": "witten_bell"}), meta)
    assert m.order == 2 and m.smoothing == "witten_bell" and m.max_len == 24
