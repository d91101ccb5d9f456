"""Sample-quality metrics: FID/KID, fidelity, diversity, memorisation and the feature extractor.

Analytic checks run on synthetic features; the rest on a tiny prototypical network briefly
trained on meta-train Omniglot characters and evaluated on held-out ones.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from fewgen.errors import CheckpointError
from fewgen import feature_net as features
from fewgen.feature_net import FeatureNet, embed, feature_net_for, load_feature_net, save_feature_net, train_feature_net
from fewgen.metrics.fid import fid, fid_from_features, frechet_distance, kid, kid_from_features
from fewgen.metrics.quality import (diversity, fidelity, mean_pairwise_distance, memorization, partners, quality_report,
                                    seed_sensitivity, support_sensitivity)

WAYS = 10  # held-out tasks per report


def gaussians(n: int, d: int, shift: float, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) + shift


# ----------------------------------------------------------------------------- FID / KID on features
def test_frechet_of_a_set_with_itself_is_zero_and_matches_torchmetrics():
    a, b = gaussians(400, 8, 0.0, 0), gaussians(400, 8, 0.0, 1)
    assert abs(frechet_distance(a, a)) < 1e-9
    assert abs(fid_from_features(a, a)) < 1e-4
    assert fid_from_features(a, b) == pytest.approx(frechet_distance(a, b), rel=1e-4, abs=1e-5)


def test_frechet_distance_of_shifted_gaussians_is_the_squared_shift():
    # Same covariance: FID = |mu_a - mu_b|^2 = D * shift^2 (up to sampling error).
    a, b = gaussians(4000, 4, 0.0, 0), gaussians(4000, 4, 1.0, 1)
    assert frechet_distance(a, b) == pytest.approx(4.0, rel=0.1)
    fids = [fid_from_features(a, gaussians(4000, 4, s, 2)) for s in (0.0, 0.5, 1.0, 2.0)]
    assert fids == sorted(fids) and fids[0] < 0.05


def test_kid_is_near_zero_for_the_same_distribution_and_grows_with_a_shift():
    a = gaussians(300, 8, 0.0, 0)
    same, _ = kid_from_features(a, gaussians(300, 8, 0.0, 1), subset_size=100, subsets=20)
    far, _ = kid_from_features(a, gaussians(300, 8, 1.0, 2), subset_size=100, subsets=20)
    assert abs(same) < 0.05 and far > 0.5
    # seeded: the same subsets every time, and the subset size is capped at the smaller set
    assert kid_from_features(a, a, seed=3) == kid_from_features(a, a, seed=3)
    assert math.isfinite(kid_from_features(a[:10], a[10:20], subset_size=100)[0])


def test_fid_and_kid_through_the_feature_net_agree_with_the_feature_path():
    net = FeatureNet(1, 16, width=8).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, 1, 16, 16, generator=g)
    y = (x + 0.5 * torch.rand(30, 1, 16, 16, generator=g)).clamp(0, 1)
    assert abs(fid(x, x, net, chunk=7)) < 1e-3
    assert fid(x, y, net, chunk=7) == pytest.approx(fid_from_features(embed(net, x), embed(net, y)), rel=1e-4)
    assert kid(x, y, net, subset_size=20, subsets=5) == kid_from_features(embed(net, x), embed(net, y), 20, 5)


# ----------------------------------------------------------------------------- per-task figures on features
def test_diversity_of_identical_copies_is_zero_and_of_a_matching_spread_is_one():
    real = gaussians(3 * 20, 4, 0.0, 0).view(3, 20, 4)
    copies = real[:, :1].expand(3, 20, 4)
    assert torch.all(diversity(copies, real) == 0)
    assert torch.allclose(diversity(real, real), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(diversity(2 * real, real), 2 * torch.ones(3, dtype=torch.float64))
    x = torch.tensor([[[0.0, 0.0], [3.0, 4.0]]])  # one pair at distance 5
    assert mean_pairwise_distance(x).tolist() == [5.0]
    assert math.isnan(mean_pairwise_distance(x[:, :1]).item())


def test_memorization_follows_its_definition():
    support = torch.tensor([[[0.0], [10.0]]])  # (T=1, K=2, D=1)
    real = torch.tensor([[[2.0], [7.0]]])  # tau = min(2, 3) = 2
    samples = torch.tensor([[[0.0], [9.0], [1.5], [4.0]]])
    # 0: a copy -> memorised; 9: 1 from a shot -> memorised; 1.5: nearest is the real 2.0 -> not;
    # 4: 4 from its nearest shot, beyond tau -> not.
    assert memorization(samples, support, real).tolist() == [0.5]
    mask = torch.tensor([[True, False]])  # the shot at 10 is absent: 9 is no longer a copy
    assert memorization(samples, support, real, mask).tolist() == [0.25]
    assert math.isnan(memorization(samples, support, real[:, :0]).item())


def test_fidelity_assigns_each_sample_to_its_nearest_prototype():
    support = torch.tensor([[[0.0], [2.0]], [[10.0], [10.0]]])  # prototypes 1 and 10
    samples = torch.tensor([[[0.5], [9.0]], [[6.0], [11.0]]])
    assert fidelity(samples, support).tolist() == [0.5, 1.0]
    mask = torch.tensor([[True, False], [True, True]])  # task 0's prototype becomes 0
    assert fidelity(torch.tensor([[[4.0]], [[6.0]]]), support, mask).tolist() == [1.0, 1.0]


def test_partners_are_a_seeded_cycle_with_no_task_its_own():
    p = partners(7, seed=3)
    assert sorted(p.tolist()) == list(range(7)) and all(p[i] != i for i in range(7))
    assert torch.equal(p, partners(7, seed=3)) and not torch.equal(p, partners(7, seed=4))
    assert partners(2).tolist() == [1, 0]
    with pytest.raises(ValueError, match="two tasks"):
        partners(1)


def test_support_sensitivity_is_how_far_samples_move_over_how_far_the_concepts_lie():
    real = torch.tensor([[[0.0], [0.0]], [[10.0], [10.0]]])  # (T=2, Q=2, D=1): the two tasks 10 apart
    samples = torch.tensor([[[1.0], [2.0]], [[9.0], [8.0]]])
    p = torch.tensor([1, 0])
    assert support_sensitivity(samples, samples, real, p).tolist() == [0.0, 0.0]  # the seed alone decides
    assert support_sensitivity(samples, samples + 5, real, p).tolist() == [0.5, 0.5]
    assert support_sensitivity(samples, samples.flip(0), real, p).tolist() == [0.7, 0.7]  # (8 + 6) / 2 / 10
    assert seed_sensitivity(samples, real, p).tolist() == [0.1, 0.1]  # two samples of a task lie 1 apart


def tiny_diffusion(read_support: bool):
    """A tiny image_diffusion model: fresh (its zero-initialised output layers ignore the support
    exactly) or with every parameter moved at random (it reads the support)."""
    from fewgen.config import Config, replace
    from fewgen.models import build_model

    cfg = replace(Config(), data={"image_size": 8}, model={"family": "image_diffusion", "hidden": 8, "context": 16})
    m = build_model(cfg.model, {"example_shape": [1, 8, 8], "modality": "image"})
    if read_support:
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for q in m.parameters():
                q.add_(0.3 * torch.randn(q.shape, generator=g))
    return m.eval(), cfg.eval


@pytest.mark.parametrize("read_support", [False, True])
def test_quality_reports_measure_whether_samples_follow_the_support(read_support):
    from fewgen.adaptation import adapt
    from fewgen.image_quality import QualitySet, quality_reports

    model, ecfg = tiny_diffusion(read_support)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(4, 6, 1, 8, 8, generator=g) > 0.6).float()
    q = QualitySet(x[:, :2], x[:, 2:], FeatureNet(1, 8, width=8).eval())
    res = quality_reports(lambda s, m, steps: adapt(model, s, m), q, 0, ecfg, samples=3, sensitivity=True)
    sens, seed = res["0"]["sensitivity"], res["0"]["sensitivity_seed"]
    assert sens == 0.0 if not read_support else sens > 0.05
    assert seed > 0  # another seed moves the samples either way
    assert "sensitivity" not in quality_reports(lambda s, m, steps: adapt(model, s, m), q, 0, ecfg, samples=3)["0"]


# ----------------------------------------------------------------------------- on held-out Omniglot
@pytest.fixture(scope="module")
def omniglot_net(omniglot_tasks):
    splits = omniglot_tasks.split((0.7, 0.1, 0.2), seed=0)
    # One thread: on a loaded 2-core machine two threads contend and run this ~5x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = train_feature_net(splits["train"], steps=120, ways=20, shots=5, queries=5, seed=0, width=32, lr=3e-3)
    finally:
        torch.set_num_threads(threads)
    return net, splits["test"]


@pytest.fixture(scope="module")
def held_out(omniglot_net):
    """WAYS held-out characters: 5 shots, 10 real held-out examples, 5 other real examples."""
    net, test = omniglot_net
    ep = test.sample_episode(seed=1, index=0, num_tasks=WAYS, shots=5, queries=15)
    return net, ep.support, ep.query[:, :10], ep.query[:, 10:], ep.names


def test_fresh_real_examples_score_like_real_data(held_out):
    net, support, real, other, names = held_out
    r = quality_report(other, support, real, net, names=names, kid_subsets=10)
    chance = 1 / WAYS
    assert r["fidelity_chance"] == chance and r["fidelity"] > 3.5 * chance  # 0.46-0.64 over seeds
    assert 0.7 < r["diversity"] < 1.4
    assert r["memorization"] < 0.3  # at most 1 / (Q + 1) = 0.09 in expectation
    # beside them, the real held-out examples under the same protocol (leave-one-out; half against half)
    assert r["memorization_chance"] == 1 / 11 and 0 <= r["memorization_real"] <= 1 / 10
    assert 0.6 < r["diversity_real"] < 1.6 and r["fidelity_real"] > 3 * chance
    assert abs(r["kid"]) < 0.2  # noise scores about 2
    assert set(r["per_task"]) == set(names)
    json.dumps(r, allow_nan=False)  # JSON-safe


def test_copied_support_is_memorised_and_noise_is_at_chance(held_out):
    net, support, real, other, _ = held_out
    copies = quality_report(support, support, real, net, kid_subsets=10)
    assert copies["memorization"] == 1.0
    noise = torch.rand(other.shape, generator=torch.Generator().manual_seed(0))
    r = quality_report(noise, support, real, net, kid_subsets=10)
    assert r["fidelity"] < 2.5 / WAYS and r["memorization"] == 0.0
    real_r = quality_report(other, support, real, net, kid_subsets=10)
    assert r["fid"] > 2 * real_r["fid"] and r["kid"] > real_r["kid"] + 0.1
    assert r["fid_pooled"] > 2 * real_r["fid_pooled"]
    one = support[:, :1].expand_as(other)  # every sample the same image: total mode collapse
    assert quality_report(one, support, real, net, kid_subsets=10)["diversity"] == 0.0


def test_fid_of_held_out_images_with_themselves_is_zero_and_grows_with_a_shift(held_out):
    net, _, real, _, _ = held_out
    x = real.flatten(0, 1)
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
    fids = [fid(x, (1 - a) * x + a * noise, net) for a in (0.0, 0.2, 0.5)]
    assert abs(fids[0]) < 1e-3 and fids[0] < fids[1] < fids[2]


# ----------------------------------------------------------------------------- storage
def test_save_load_round_trips_and_cache_reuses(tmp_path, omniglot_net, monkeypatch):
    net, test = omniglot_net
    x = test.examples(0)[:4]
    path = save_feature_net(tmp_path / "fn", net)
    back = load_feature_net(path)
    assert torch.equal(embed(back, x), embed(net, x)) and back.info == net.info
    (path / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError):
        load_feature_net(path)
    with pytest.raises(CheckpointError):
        load_feature_net(tmp_path / "absent")

    small = test.subset(range(6))
    first = feature_net_for(small, tmp_path / "cache", steps=2, ways=3, shots=1, queries=1, width=8)
    with monkeypatch.context() as m:  # the second call must load, not train
        m.setattr(features, "train_feature_net", lambda *a, **k: pytest.fail("retrained a cached net"))
        again = feature_net_for(small, tmp_path / "cache", steps=2, ways=3, shots=1, queries=1, width=8)
    assert torch.equal(embed(first, x), embed(again, x))
    other = feature_net_for(small, tmp_path / "cache", steps=2, ways=3, shots=1, queries=1, width=8, seed=1)
    assert other.info["key"]["seed"] == 1 and load_feature_net(tmp_path / "cache").info["key"]["seed"] == 1
