"""Statistical: the default feature extractor separates held-out Omniglot characters, and the
quality figures of real held-out examples look like real data (so generated samples are
judged against a sound yardstick)."""

import pytest
import torch

from fewgen.feature_net import embed, train_feature_net
from fewgen.metrics.quality import fidelity, quality_report


@pytest.mark.slow
def test_default_feature_net_generalises_to_held_out_alphabets(omniglot_tasks):
    splits = omniglot_tasks.split((0.7, 0.1, 0.2), seed=0)
    net = train_feature_net(splits["train"], seed=0)  # the defaults: 300 episodes of 20-way 5-shot
    test = splits["test"]
    # Held-out few-shot accuracy of the nearest-prototype classifier, over 10 episodes each.
    for ways, shots, floor in ((5, 1, 0.55), (20, 5, 0.5)):
        acc = torch.cat([fidelity(embed(net, ep.query), embed(net, ep.support))
                         for ep in (test.sample_episode(3, i, ways, shots, 10) for i in range(10))])
        assert acc.mean() > floor, (ways, shots, float(acc.mean()))

    ep = test.sample_episode(seed=4, index=0, num_tasks=20, shots=5, queries=15)
    real, other = ep.query[:, :10], ep.query[:, 10:]
    r = quality_report(other, ep.support, real, net, names=ep.names)
    assert r["fidelity"] > 8 * r["fidelity_chance"]
    assert abs(r["diversity"] - 1) < 0.2
    assert r["memorization"] < 0.2  # expectation at most 1 / (Q + 1) = 0.09
    copies = quality_report(ep.support, ep.support, real, net)
    assert copies["memorization"] == 1.0 and copies["fidelity"] >= r["fidelity"]
