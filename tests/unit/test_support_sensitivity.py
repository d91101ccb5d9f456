"""Support sensitivity: a model that ignores its support draws the same samples from the same seed
whatever the support; one that reads it does not."""

from fewgen.adaptation import adapt
from fewgen.evaluate import text_sample_report
from fewgen.metrics.support_sensitivity import partners, support_sensitivity
from fewgen.models.bytes import encode_batch, tokenizer_meta
from fewgen.models.text_ngram import TextNgram
from fewgen.tasks.base import TaskSet

LATIN = ["abba", "baca", "cab", "acca", "bab", "caca", "abc", "cba", "aab", "bbc"]
CYRILLIC = ["абба", "баба", "вав", "авва", "ббв", "вава", "абв", "вба", "ааб", "ббв"]


def _tasks() -> TaskSet:
    ex = [encode_batch(w, 24) for w in (LATIN, CYRILLIC)]
    return TaskSet.from_lists(["latin", "cyrillic"], ["latin", "cyrillic"], ex, "text", "test", tokenizer_meta(24))


def _report(conditional: bool) -> dict:
    model = TextNgram(order=2)  # no background: with lambda ~ 1 for K > 0, the support n-gram alone
    model.fit_counts([encode_batch(LATIN + CYRILLIC, 24)], [])
    model.set_mixing(0.99, 1e-3, 0.0)

    def adapt_fn(sup, mask, steps):  # conditional=False: the empty set's context, whatever the shots
        return adapt(model, sup, mask, conditional=conditional)

    return text_sample_report(adapt_fn, _tasks(), set(), shots=5, n=30, seed=3)


def test_a_model_that_ignores_its_support_is_insensitive():
    s = _report(conditional=False)["sensitivity"]
    assert s["pairs"] == 2 and s["same_script_pairs"] == 0
    assert s["identical"] == 1.0 and s["edit_distance"] == 0.0
    assert s["edit_distance_real"] > 0.9  # real words of the two scripts share no letter
    assert set(s["by_script"]) == {"LATIN", "CYRILLIC"} and s["per_pair"]["latin"]["partner"] == "cyrillic"


def test_a_model_that_copies_its_support_is_sensitive():
    r = _report(conditional=True)
    s = r["sensitivity"]
    assert s["identical"] <= 0.1 and s["edit_distance"] > 0.8
    assert r["by_script"]["LATIN"]["tasks"] == 1 and r["by_script"]["CYRILLIC"]["validity"] == 1.0


def test_partners_prefer_the_same_script_and_follow_the_seed():
    scripts = {"en": "LATIN", "fr": "LATIN", "de": "LATIN", "ru": "CYRILLIC", "uk": "CYRILLIC", "el": "GREEK"}
    p = partners(list(scripts), scripts, seed=0)
    assert all(b != a for a, b in p.items())
    assert all(scripts[p[a]] == scripts[a] for a in ("en", "fr", "de", "ru", "uk")) and p["el"] != "el"
    assert p == partners(list(scripts), scripts, seed=0) and partners(["en"], scripts) == {}
    one = support_sensitivity({"en": ["a", "b"]}, {"en": ["x"]}, scripts)
    assert one["pairs"] == 0 and one["identical"] is None
