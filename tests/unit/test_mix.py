import pytest
import torch

from fewgen.errors import DataError
from fewgen.tasks.mix import parse_mixture
from fewgen.tasks.spec import load_tasks


def test_parse_mixture():
    assert parse_mixture("toy@2+toy") == [("toy", 2.0), ("toy", 1.0)]
    with pytest.raises(DataError, match="bad weight"):
        parse_mixture("toy@x")
    with pytest.raises(DataError, match="positive"):
        parse_mixture("toy@0")


def test_mixture_draws_sources_by_weight(image_folder, omniglot_dir):
    ts = load_tasks(f"folder:{image_folder}@3+omniglot:{omniglot_dir}@1")
    assert len(ts) == 6 + 242 and ts.names[0].startswith("folder/")
    assert all(g.split("/")[0] in ("folder", "omniglot") for g in ts.groups)
    ids = ts.sample_task_ids(4000, torch.Generator().manual_seed(0))
    share = sum(ts.names[i].startswith("folder/") for i in ids.tolist()) / 4000
    assert 0.72 < share < 0.78  # 3 : 1
    ep = ts.sample_episode(0, 0, 8, 1, 1)
    assert ep.support.shape == (8, 1, 1, 28, 28)
    sp = ts.split()
    assert not set(sp["train"].groups) & set(sp["test"].groups)
    assert "mix_weights" in sp["train"].meta


def test_mixture_rejects_mismatched_modalities(omniglot_dir):
    with pytest.raises(DataError, match="same modality"):
        load_tasks(f"omniglot:{omniglot_dir}+toy")
