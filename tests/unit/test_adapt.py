"""Adaptation: steps 0 is amortized; fine-tuning gives per-task params; checkpoints for every
algorithm; the adapted-checkpoint round trip ``fewgen adapt -> sample -> eval``."""

from __future__ import annotations

import json

import pytest
import torch

from fewgen.adaptation import adapt, adapt_checkpoint, adapted_nll, adapted_sample, adapter_for_checkpoint
from fewgen.checkpoint import Checkpoint, load, save
from fewgen.config import Config, DataConfig, ModelConfig, TrainConfig
from fewgen.meta.inner import LR_PREFIX, init_inner_lrs, support_loss
from fewgen.models import call, params_of
from fewgen.models.image_vae import ImageVAE
from fewgen.models.toy_gauss import ToyGauss


def toy_model():
    torch.manual_seed(0)
    return ToyGauss(dim=2, hidden=16, context=8, scale=3.0)


def toy_support(tasks=3, shots=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    sup = 3 * torch.randn(tasks, 1, 2, generator=g) + 0.5 * torch.randn(tasks, shots, 2, generator=g)
    mask = torch.ones(tasks, shots, dtype=torch.bool)
    mask[0, 1:] = False
    return sup, mask


def test_steps_zero_is_amortized():
    model, (sup, mask) = toy_model(), toy_support()
    a = adapt(model, sup, mask)
    assert not a.per_task
    assert torch.equal(a.context["vec"], call(model, params_of(model), "context", sup, mask)["vec"])
    x = torch.randn(3, 5, 2)
    assert torch.equal(adapted_nll(a, x), model.nll(x, a.context))
    unconditional = adapt(model, sup, mask, conditional=False)
    assert torch.equal(unconditional.context["vec"], model.context(sup[:, :0], mask[:, :0])["vec"])


@pytest.mark.parametrize("conditional", [True, False])
def test_fine_tuning_gives_per_task_params_equal_to_a_manual_sgd_loop(conditional):
    model, (sup, mask) = toy_model(), toy_support()
    a = adapt(model, sup, mask, conditional=conditional, steps=3, lr=0.02)
    assert a.per_task and a.context["vec"].shape == (3, 8)
    for k, p in model.named_parameters():
        assert a.params[k].shape == (3, *p.shape)
    for t in range(3):  # the same steps with plain autograd, one task at a time
        phi = {k: v.detach().clone().requires_grad_() for k, v in params_of(model).items()}
        for _ in range(3):
            loss = support_loss(model, phi, sup[t : t + 1], mask[t : t + 1], None, conditional)
            grads = torch.autograd.grad(loss, list(phi.values()), allow_unused=True)
            phi = {k: (v - 0.02 * g if g is not None else v).detach().requires_grad_()
                   for (k, v), g in zip(phi.items(), grads)}
        for k in phi:
            assert torch.allclose(a.params[k][t], phi[k], atol=1e-6), k
    looped = adapt(model, sup, mask, conditional=conditional, steps=3, lr=0.02, vectorize=False)
    assert all(torch.allclose(looped.params[k], a.params[k], atol=1e-6) for k in a.params)
    # Fine-tuning lowers the support loss of every task that has shots.
    before = adapted_nll(adapt(model, sup, mask, conditional=conditional), sup)
    after = adapted_nll(a, sup)
    assert ((after * mask).sum(1) < (before * mask).sum(1)).all()
    assert adapted_sample(a, 7, torch.Generator().manual_seed(0)).shape == (3, 7, 2)


def test_one_task_fine_tunes_as_its_row_of_a_vmapped_batch(monkeypatch):
    import fewgen.adaptation as adaptation

    model, (sup, mask) = toy_model(), toy_support()
    calls = []
    real = adaptation.map_tasks
    monkeypatch.setattr(adaptation, "map_tasks", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    batch = adapt(model, sup[1:], mask[1:], steps=3, lr=0.02)
    alone = adapt(model, sup[1:2], mask[1:2], steps=3, lr=0.02)
    assert calls == [True, False]  # vmap over tasks; one task is a loop of one
    for k in batch.params:
        torch.testing.assert_close(alone.params[k][0], batch.params[k][0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(alone.context["vec"][0], batch.context["vec"][0], atol=1e-6, rtol=1e-5)


def test_per_task_nll_and_samples_match_each_task_alone():
    model, (sup, mask) = toy_model(), toy_support()
    a = adapt(model, sup, mask, steps=2, lr=0.02)
    x = torch.randn(3, 6, 2)
    nll = adapted_nll(a, x)
    for t in range(3):
        assert torch.allclose(nll[t], adapted_nll(a.task(t), x[t : t + 1])[0], atol=1e-6)


def checkpoint(tmp_path, algo: str, model=None, extra_tensors=None) -> Checkpoint:
    model = model or toy_model()
    cfg = Config(data=DataConfig(spec="toy"), model=ModelConfig(hidden=16, context=8),
                 train=TrainConfig(algo=algo, inner_lr=0.02))
    save(tmp_path / algo, model, cfg, {"algo": algo}, extra_tensors or {})
    return load(tmp_path / algo)


def test_adapter_for_checkpoint_knows_each_algorithm(tmp_path):
    sup, mask = toy_support()
    for algo, conditional in [("amortized", True), ("hybrid", True), ("maml", False), ("fomaml", False),
                              ("reptile", False), ("transfer", False)]:
        ck = checkpoint(tmp_path, algo)
        a = adapter_for_checkpoint(ck)(sup, mask, 0)
        assert torch.equal(a.context["vec"], adapt(ck.model, sup, mask, conditional=conditional).context["vec"]), algo
        b = adapter_for_checkpoint(ck)(sup, mask, 2)
        if algo in ("amortized", "transfer"):  # not meta-learned for an inner loop: plain Adam fine-tuning
            ref = adapt(ck.model, sup, mask, conditional=conditional, steps=2, lr=ck.config.eval.finetune_lr,
                        optimizer="adam")
        else:  # the inner loop the init was meta-learned for
            ref = adapt(ck.model, sup, mask, conditional=conditional, steps=2, lr=0.02)
        assert all(torch.equal(b.params[k], ref.params[k]) for k in ref.params), algo
    # scratch: a fresh seeded init (not the checkpoint's weights), the same for the same seed
    ck = checkpoint(tmp_path, "maml")
    s1, s2 = (adapter_for_checkpoint(ck, algo="scratch", seed=s)(sup, mask, 0) for s in (7, 7))
    s3 = adapter_for_checkpoint(ck, algo="scratch", seed=8)(sup, mask, 0)
    assert torch.equal(s1.params["head.2.bias"], s2.params["head.2.bias"])
    assert not torch.equal(s1.params["head.2.bias"], s3.params["head.2.bias"])
    assert not torch.equal(s1.params["head.2.bias"], ck.model.head[2].bias)
    # Meta-SGD: the checkpoint's learned rates are the inner step sizes (unless --lr is given)
    rates = {k: v * 3 for k, v in init_inner_lrs(ck.model, 0.01).items()}
    ck = checkpoint(tmp_path, "hybrid", extra_tensors=rates)
    got = adapter_for_checkpoint(ck)(sup, mask, 1)
    ref = adapt(ck.model, sup, mask, conditional=True, steps=1, lr=0.03)
    assert all(torch.allclose(got.params[k], ref.params[k], atol=1e-7) for k in ref.params)
    assert any(k.startswith(LR_PREFIX) for k in ck.tensors)


def test_adapt_checkpoint_round_trip_toy(tmp_path):
    ck = checkpoint(tmp_path, "maml")
    sup, _ = toy_support(tasks=1, shots=5)
    f = tmp_path / "support.txt"
    f.write_text("\n".join(" ".join(str(float(v)) for v in row) for row in sup[0]))
    out, k = adapt_checkpoint(ck, [f], tmp_path / "adapted", steps=3)
    assert k == 5
    ad = load(out)
    assert ad.info["adapted"] is True and ad.info["adaptation"]["steps"] == 3
    ref = adapt(ck.model, sup, conditional=False, steps=3, lr=0.02)
    for name, p in ad.model.named_parameters():
        assert torch.allclose(p, ref.params[name][0], atol=1e-6)
    assert torch.allclose(ad.tensors["context.vec"], ref.context["vec"], atol=1e-6)
    # The adapted checkpoint is the distribution: any support is ignored at steps 0.
    a = adapter_for_checkpoint(ad)(torch.randn(2, 3, 2), torch.ones(2, 3, dtype=torch.bool), 0)
    x = torch.randn(2, 4, 2)
    assert torch.allclose(adapted_nll(a, x), torch.cat([adapted_nll(ref, x[t : t + 1]) for t in range(2)]), atol=1e-5)


def test_cli_adapt_sample_eval_round_trip(tmp_path, capsys):
    from conftest import make_image_folder
    from fewgen.cli import main

    root = make_image_folder(tmp_path / "imgs", tasks=3, per_task=4, size=16)
    torch.manual_seed(0)
    model = ImageVAE(image_size=8, channels=1, hidden=8, latent=4, context=8, features=16)
    cfg = Config(data=DataConfig(spec=f"folder:{root}", image_size=8),
                 model=ModelConfig(hidden=8, latent=4, context=8, extra={"features": 16}),
                 train=TrainConfig(algo="maml", inner_lr=0.01))
    save(tmp_path / "maml", model, cfg, {"algo": "maml"})
    ck, ad = tmp_path / "maml", tmp_path / "adapted"

    assert main(["adapt", str(ck), "--support", str(root / "task00"), "--steps", "2", "--out", str(ad)]) == 0
    meta = json.loads((ad / "config.json").read_text())
    assert meta["extra"]["adapted"] is True and meta["extra"]["adaptation"]["shots"] == 4
    loaded = load(ad)
    want = adapt(model, torch.zeros(1, 1, 1, 8, 8)).context
    assert {k: loaded.tensors["context." + k].shape for k in want} == {k: v.shape for k, v in want.items()}
    fine_tuned = dict(loaded.model.named_parameters())
    assert any(not torch.equal(fine_tuned[k], p) for k, p in model.named_parameters())  # stored adapted weights

    assert main(["sample", str(ad), "--n", "4", "--out", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").exists()
    assert main(["adapt", str(ck), "--support", str(root / "task01"), "--steps", "0",
                 "--out", str(tmp_path / "a0")]) == 0

    common = ["--data", f"folder:{root}", "--split", "all", "--shots", "1", "--importance-samples", "2",
              "--max-tasks", "2", "--quiet"]
    for path, algo in ((ad, None), (ck, "scratch")):
        js = tmp_path / "eval.json"
        assert main(["eval", str(path), *common, "--steps", "0,1", "--json", str(js),
                     *(["--algo", algo] if algo else [])]) == 0
        r = json.loads(js.read_text())
        assert set(r["steps"]) == {"0", "1"} and r["shots"] == r["steps"]["0"]
        assert all(v["nll_nats"] > 0 for s in r["steps"].values() for v in s.values())
    capsys.readouterr()
    assert main(["train", "--data", "toy", "--algo", "scratch", "--out", str(tmp_path / "x"),
                 "--steps", "1", "--quiet"]) == 2
    assert "needs no training" in capsys.readouterr().err
