"""Statistical: a meta-learned init + 5 fine-tuning steps beats scratch and transfer.

On ``toy`` (2-D Gaussians with random means), with the same 5 shots and the same 5 SGD steps at
the same inner learning rate on held-out tasks, the initialisation meta-learned by first-order
MAML (second order is as good and 5x slower; its gradient is tested exactly in
``tests/unit/test_maml.py``) must reach a clearly lower
query NLL than a fresh init (scratch) and than one unconditional model pre-trained on all
meta-train tasks (transfer). Exact-likelihood model, so the NLLs are exact.
"""

from __future__ import annotations

import pytest

from fewgen.adaptation import adapter_for_checkpoint
from fewgen.checkpoint import load
from fewgen.config import Config, DataConfig, EvalConfig, ModelConfig, TrainConfig
from fewgen.evaluate import conditional_nll
from fewgen.tasks.spec import load_split
from fewgen.training import train

SHOTS, STEPS = 5, 5


def trained(tmp_path, algo: str, steps: int):
    cfg = Config(data=DataConfig(spec="toy"), model=ModelConfig(hidden=32, context=16),
                 train=TrainConfig(algo=algo, steps=steps, meta_batch=16, shots=SHOTS, queries=10,
                                   inner_steps=STEPS, inner_lr=0.05, lr=3e-3, val_every=10**9,
                                   ckpt_every=10**9, log_every=50))
    train(cfg, tmp_path / algo, progress=False)
    return load(tmp_path / algo)


@pytest.mark.slow
def test_meta_learned_init_beats_scratch_and_transfer(tmp_path, one_thread):
    maml, transfer = trained(tmp_path, "fomaml", 150), trained(tmp_path, "transfer", 150)
    test = load_split("toy", maml.config.data, "test")
    ecfg = EvalConfig(max_queries=15)

    def nll(ck, algo=None):
        return conditional_nll(adapter_for_checkpoint(ck, algo=algo), test, SHOTS, STEPS, ecfg)

    m, t, s = nll(maml), nll(transfer), nll(transfer, "scratch")
    assert m["tasks"] == t["tasks"] == s["tasks"] == len(test)
    assert m["nll_nats"] + m["ci95"] + t["ci95"] + 0.3 < t["nll_nats"], (m, t)
    assert m["nll_nats"] + m["ci95"] + s["ci95"] + 0.3 < s["nll_nats"], (m, s)
    # and fine-tuning is what adapts it: 5 steps beat 0 steps
    assert m["nll_nats"] < conditional_nll(adapter_for_checkpoint(maml), test, SHOTS, 0, ecfg)["nll_nats"] - 0.5
