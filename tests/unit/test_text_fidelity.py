"""Text fidelity (fewgen.metrics.text_fidelity) on a handful of wordfreq languages."""

import random

import pytest
import torch

from fewgen.metrics.text_fidelity import attribute, dominant_script, fidelity_report, fit_language_id

LANGS = ["en", "fr", "de", "id", "fi", "tr", "pl", "ru", "uk"]


@pytest.fixture(scope="module")
def split():
    """Per language: 100 real held-out words and 800 references, disjoint (a seeded shuffle)."""
    import wordfreq

    rng = random.Random(0)
    real, refs = [], []
    for lang in LANGS:
        words = [w for w in wordfreq.top_n_list(lang, 2000) if w.isalpha()]
        rng.shuffle(words)
        real.append(words[:100])
        refs.append(words[100:900])
    return real, refs


def test_scripts():
    assert dominant_script(["hello", "мир", "world"]) == "LATIN"
    assert dominant_script(["мир", "дом", "ok"]) == "CYRILLIC"
    assert dominant_script(["سلام", "漢字"]) == "ARABIC"
    assert dominant_script(["123", "!"]) == "NONE"


def test_real_words_score_high_and_shuffled_letters_near_chance(split):
    real, refs = split
    rep = fidelity_report(real, refs, real, LANGS)
    assert rep["scripts"]["ru"] == rep["scripts"]["uk"] == "CYRILLIC" and rep["scripts"]["fi"] == "LATIN"
    assert rep["fidelity_chance"] == pytest.approx(1 / 9)
    assert rep["fidelity_chance_same_script"] == pytest.approx((7 * (1 / 7) + 2 * (1 / 2)) / 9)
    # Samples that are real held-out words score exactly as the ceiling, far above chance.
    assert rep["fidelity"] == rep["fidelity_real"] > 0.6 > 4 * rep["fidelity_chance"]
    assert rep["fidelity_real_same_script"] >= rep["fidelity_real"]
    # Shuffled letters: strings of the same lengths drawn from the letters of all languages of the
    # task's script pooled, so they carry the script but not the language: near chance.
    rng = random.Random(1)
    pools = {}
    for words, lang in zip(real, LANGS):
        pools.setdefault(rep["scripts"][lang], []).extend(c for w in words for c in w)
    fake = [["".join(rng.choice(pools[rep["scripts"][lang]]) for _ in w) for w in words]
            for words, lang in zip(real, LANGS)]
    shuffled = fidelity_report(fake, refs, real, LANGS)
    assert shuffled["fidelity_same_script"] < rep["fidelity_chance_same_script"] + 0.15
    assert shuffled["fidelity_same_script"] < rep["fidelity_real_same_script"] - 0.3
    assert shuffled["fidelity_real"] == rep["fidelity_real"]  # the ceiling does not depend on the samples


def test_attribution_is_the_most_likely_task(split):
    real, refs = split
    lid = fit_language_id(refs, LANGS)
    assert attribute(lid, ["there", "nicht", "dengan", "и"], 0)[0].tolist() == [True, False, False, False]
    assert attribute(lid, ["nicht", "dengan"], LANGS.index("de"))[0].tolist() == [True, False]
    assert attribute(lid, [], 0)[0].numel() == 0
    empty = fidelity_report([[]] * 9, refs, real, LANGS)
    assert empty["fidelity"] is None and empty["fidelity_real"] > 0.6
    with pytest.raises(ValueError):
        fidelity_report([[]], refs, real, LANGS)
    # A string of characters no reference contains is still scored (as unknown), by every task alike.
    from fewgen.metrics.text_fidelity import log_likelihoods

    ll = log_likelihoods(lid, ["漢字", ""])
    assert ll.shape == (9, 2) and torch.isfinite(ll).all()
