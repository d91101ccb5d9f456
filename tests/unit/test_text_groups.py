"""Per-script grouping of per-task text figures, and the edit distance of the sensitivity figure."""

import math
import random

import pytest

from fewgen.metrics.edit_distance import edit_distance, normalized_edit_distance
from fewgen.metrics.text_groups import format_groups, group_means


def test_group_means_by_script():
    scripts = {"en": "LATIN", "fr": "LATIN", "de": "LATIN", "ru": "CYRILLIC", "el": "GREEK"}
    per_task = {"en": 4.0, "fr": 5.0, "de": float("nan"), "ru": 6.0, "el": None, "xx": 1.0}
    g = group_means(per_task, scripts)
    assert list(g) == ["LATIN", "CYRILLIC", "GREEK", "UNKNOWN"]  # largest first, then by name
    assert g["LATIN"] == {"tasks": 3, "value": 4.5}  # the NaN task counts, its figure does not
    assert g["CYRILLIC"]["value"] == 6.0 and g["GREEK"] == {"tasks": 1, "value": None}
    assert g["UNKNOWN"] == {"tasks": 1, "value": 1.0}
    # Several figures per task; lists and strings are not figures.
    per_task = {"en": {"fidelity": 0.5, "samples": ["a"], "partner": "fr"}, "fr": {"fidelity": 1.0},
                "ru": {"fidelity": 0.25}}
    g = group_means(per_task, scripts)
    assert g == {"LATIN": {"tasks": 2, "fidelity": 0.75}, "CYRILLIC": {"tasks": 1, "fidelity": 0.25}}
    assert format_groups(g, "fidelity") == "LATIN (2 tasks) 0.75  CYRILLIC (1) 0.25"
    assert group_means({}, scripts) == {}


def _levenshtein(a, b):
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def test_edit_distance_is_levenshtein_over_characters():
    a = ["kitten", "", "abc", "", "flaw", "мир", "漢字", "same"]
    b = ["sitting", "abc", "", "", "lawn", "мор", "字", "same"]
    assert edit_distance(a, b).tolist() == [3, 3, 3, 0, 2, 1, 1, 0]
    norm = normalized_edit_distance(a, b).tolist()
    assert norm[0] == pytest.approx(3 / 7) and norm[3] == 0.0 and norm[5] == pytest.approx(1 / 3) and norm[-1] == 0
    rng = random.Random(0)
    words = ["".join(rng.choice("abcдé") for _ in range(rng.randint(0, 10))) for _ in range(400)]
    assert edit_distance(words[:200], words[200:]).tolist() == [_levenshtein(x, y) for x, y in zip(words[:200], words[200:])]
    with pytest.raises(ValueError):
        edit_distance(["a"], [])
    assert math.isclose(float(normalized_edit_distance(["ab"], ["xy"])[0]), 1.0)
