import json

import pytest
import torch

from fewgen.config import DataConfig
from fewgen.errors import DataError
from fewgen.tasks.base import TaskSet
from fewgen.tasks import augment as A
from fewgen.tasks.images import build_glyphs, glyph_group
from fewgen.tasks.spec import load_split, load_tasks


def test_omniglot_archives_load(omniglot_tasks):
    ts = omniglot_tasks
    # The two official "small" background sets overlap (Greek, Latin): files are read once.
    assert len(ts) == 242 and set(ts.counts.tolist()) == {20}
    assert len(set(ts.groups)) == 8 and ts.example_shape == (1, 28, 28)
    assert set(ts.data.unique().tolist()) == {0.0, 1.0}  # binarised
    ink = ts.data.mean().item()
    assert 0.02 < ink < 0.3  # ink = 1 on a mostly empty page


def test_splits_are_disjoint_deterministic_and_by_group(omniglot_tasks):
    a = omniglot_tasks.split((0.7, 0.1, 0.2), seed=0)
    b = omniglot_tasks.split((0.7, 0.1, 0.2), seed=0)
    assert [a[s].names for s in a] == [b[s].names for s in b]
    groups = {s: set(a[s].groups) for s in a}
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"])
    assert not (groups["val"] & groups["test"])
    assert sum(len(a[s]) for s in a) == len(omniglot_tasks)
    assert all(len(a[s]) > 0 for s in a)
    c = omniglot_tasks.split((0.7, 0.1, 0.2), seed=1)
    assert [c[s].names for s in c] != [a[s].names for s in a]


def test_episodes_shapes_determinism_and_disjoint_support_query(omniglot_tasks):
    ts = omniglot_tasks
    ep = ts.sample_episode(seed=3, index=7, num_tasks=4, shots=5, queries=10, min_shots=0)
    assert ep.support.shape == (4, 5, 1, 28, 28) and ep.query.shape == (4, 10, 1, 28, 28)
    assert ep.support_mask.shape == (4, 5) and ep.support_mask.dtype == torch.bool
    again = ts.sample_episode(seed=3, index=7, num_tasks=4, shots=5, queries=10, min_shots=0)
    assert torch.equal(ep.support, again.support) and ep.names == again.names
    other = ts.sample_episode(seed=3, index=8, num_tasks=4, shots=5, queries=10, min_shots=0)
    assert not torch.equal(ep.query, other.query)
    for t in range(4):  # the 15 examples of a task are distinct drawings of one character
        ex = ts.examples(ts.index(ep.names[t]))
        both = torch.cat([ep.support[t], ep.query[t]])
        matches = (both.flatten(1)[:, None] == ex.flatten(1)[None]).all(-1)
        assert matches.any(1).all()
        assert len(set(matches.float().argmax(1).tolist())) == 15


def test_too_few_examples_is_a_clear_error(omniglot_tasks):
    with pytest.raises(DataError, match="has 20 examples; 25 are needed"):
        omniglot_tasks.sample_episode(0, 0, 2, 5, 20)


def test_folder_loader_modes_and_sizes(image_folder):
    ts = load_tasks(f"folder:{image_folder}", DataConfig(image_size=16))
    assert len(ts) == 6 and ts.example_shape == (1, 16, 16) and set(ts.counts.tolist()) == {8}
    # L, RGB, RGBA and palette versions of the same picture load identically.
    ex = ts.examples(0)
    assert torch.equal(ex[0], ts.examples(0)[0])
    assert ts.groups == ts.names  # folders split by task name
    sp = load_split(f"folder:{image_folder}", DataConfig(image_size=16), "test")
    assert 0 < len(sp) < 6


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        load_tasks(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no task sub-folders"):
        load_tasks(f"folder:{tmp_path / 'empty'}")
    with pytest.raises(DataError, match="unknown data spec 'nonsense:x'; valid sources:"):
        load_tasks("nonsense:x")


def test_split_file(image_folder, tmp_path):
    f = tmp_path / "split.json"
    f.write_text(json.dumps({"train": ["task00", "task01"], "val": ["task02"], "test": ["task03", "task04"]}))
    sp = load_tasks(f"folder:{image_folder}").split(split_file=f)
    assert sp["train"].names == ["task00", "task01"] and sp["test"].names == ["task03", "task04"]
    f.write_text(json.dumps({"train": ["task00"], "test": ["task00"]}))
    with pytest.raises(DataError, match="more than one split"):
        load_tasks(f"folder:{image_folder}").split(split_file=f)


def test_glyph_renders_are_nonempty_and_distinct():
    ts = build_glyphs(DataConfig(image_size=28), max_chars=80)
    assert len(ts) >= 40
    assert (ts.data.flatten(1).sum(1) >= 3).all()  # no blank renders
    means = torch.stack([ts.examples(i).mean(0).flatten() for i in range(len(ts))])
    d = torch.cdist(means, means) + torch.eye(len(ts)) * 1e9
    assert d.min() > 0.5  # no two characters render the same (no placeholder boxes)
    assert (ts.counts >= 8).all()
    assert glyph_group("Ж") == "CYRILLIC" and glyph_group("a") == "LATIN"


def test_augmentation_transforms_a_task_consistently(omniglot_tasks):
    ep = omniglot_tasks.sample_episode(0, 0, 8, 3, 4)
    g = torch.Generator().manual_seed(0)
    aug = A.flip(A.rotate90(ep, g), g)
    assert aug.support.shape == ep.support.shape and torch.equal(aug.support_mask, ep.support_mask)
    for t in range(8):  # the same one of the 8 symmetries maps support and query
        found = False
        for r in range(4):
            for flip in (False, True):
                f = lambda x: torch.flip(torch.rot90(x, r, (-2, -1)), (-1,)) if flip else torch.rot90(x, r, (-2, -1))
                if torch.equal(f(ep.support[t]), aug.support[t]) and torch.equal(f(ep.query[t]), aug.query[t]):
                    found = True
        assert found


def test_taskset_rejects_duplicate_names():
    with pytest.raises(ValueError):
        TaskSet.from_lists(["a", "a"], ["g", "g"], [torch.zeros(2, 1), torch.zeros(2, 1)], "toy")
