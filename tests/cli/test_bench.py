"""fewgen bench end to end on a tiny budget: every output is written and consistent."""

import json
from dataclasses import replace as dc_replace

import pytest

from fewgen.bench import BenchConfig, quick, run_bench
from fewgen.config import Config, replace
from fewgen.errors import FewgenError


def test_bench_tiny(omniglot_dir, tmp_path):
    base = replace(Config(), model={"hidden": 8, "latent": 4, "context": 16, "extra": {"features": 32}},
                   train={"meta_batch": 4, "val_every": 5, "val_tasks": 4})
    cfg = BenchConfig(data=f"omniglot:{omniglot_dir}", methods=("amortized", "fomaml", "scratch"), shots=(1, 5),
                      steps=(0, 2), train_steps=6, eval_tasks=4, importance_samples=3, quality_tasks=3,
                      quality_samples=4, feature_steps=3, base=base)
    res = run_bench(cfg, tmp_path / "b", progress=False)
    for f in ("results.json", "results.md", "nll.png", "quality_vs_time.png", "samples_amortized.png"):
        assert (tmp_path / "b" / f).exists(), f
    on_disk = json.loads((tmp_path / "b" / "results.json").read_text())
    assert set(on_disk["methods"]) == {"amortized", "fomaml", "scratch"}
    for m, e in res["methods"].items():
        assert set(e["nll"]["steps"]) == {"0", "2"} and set(e["nll"]["steps"]["2"]) == {"1", "5"}
        assert e["nll"]["steps"]["0"]["5"]["tasks"] == 4  # the same held-out tasks for every method
        assert set(e["quality"]["2"]) >= {"fid", "kid", "fidelity", "diversity", "memorization", "sensitivity"}
    # scratch has no meta-training: it is far worse than a meta-trained model before adaptation
    assert res["methods"]["scratch"]["nll"]["shots"]["5"]["nll_nats"] > res["methods"]["amortized"]["nll"]["shots"]["5"]["nll_nats"]
    md = (tmp_path / "b" / "results.md").read_text()
    assert "| amortized |" in md and "| scratch |" in md and md.count("| real held-out data |") == 1
    assert "sensitivity (≈1) |" in md


def test_quick_budget_is_small():
    cfg = quick(BenchConfig(data="glyphs"))
    assert cfg.train_steps <= 150 and cfg.train_seconds <= 60 and max(cfg.steps) <= 10


def test_bench_cross_domain(omniglot_dir, image_folder, tmp_path):
    """Meta-train on Omniglot, evaluate on another source (all of its tasks are held out)."""
    base = replace(Config(), model={"hidden": 8, "latent": 4, "context": 16, "extra": {"features": 32}},
                   train={"meta_batch": 4, "val_every": 5, "val_tasks": 4})
    cfg = BenchConfig(data=f"omniglot:{omniglot_dir}", eval_data=f"folder:{image_folder}", methods=("amortized",),
                      shots=(1,), steps=(0,), train_steps=3, eval_tasks=4, importance_samples=2, quality_tasks=3,
                      quality_samples=4, feature_steps=2, base=base)
    res = run_bench(cfg, tmp_path / "x", progress=False)
    assert res["eval_data"] == f"folder:{image_folder}" and res["held_out_tasks"] == 4
    assert res["methods"]["amortized"]["nll"]["shots"]["1"]["tasks"] == 4


def test_eval_quality_metrics(omniglot_dir, tmp_path, capsys):
    from fewgen.cli import main
    from fewgen.training import train

    base = replace(Config(), data={"spec": f"omniglot:{omniglot_dir}"},
                   model={"hidden": 8, "latent": 4, "context": 16, "extra": {"features": 32}},
                   train={"steps": 3, "meta_batch": 4, "val_every": 3, "val_tasks": 4})
    train(base, tmp_path / "ck", progress=False)
    js = tmp_path / "q" / "eval.json"
    assert main(["eval", str(tmp_path / "ck"), "--shots", "5", "--max-tasks", "3", "--importance-samples", "2",
                 "--metrics", "nll,fid,kid,fidelity,diversity,memorization", "--feature-steps", "2",
                 "--json", str(js), "--quiet"]) == 0
    q = json.loads(js.read_text())["quality"]["0"]
    assert {"fid", "kid", "fidelity", "diversity", "memorization"} <= set(q) and q["tasks"] == 3
    # each beside real held-out data's value under the same protocol, printed too
    assert {"fid_real", "kid_real", "diversity_real", "memorization_real", "memorization_chance"} <= set(q)
    assert f"(real {q['memorization_real']:.3g}, bound {q['memorization_chance']:.3g})" in capsys.readouterr().out
    assert main(["eval", str(tmp_path / "ck"), "--metrics", "nll,bogus"]) == 2


def test_bench_text_reports_bits_per_char(tmp_path):
    base = replace(Config(), model={"hidden": 16, "context": 16},
                   data={"max_examples_per_task": 40},
                   train={"meta_batch": 4, "val_every": 5, "val_tasks": 4, "shots": 3, "queries": 4})
    cfg = BenchConfig(data="words:en,fr,de,es,it,pt,nl,sv,pl,ru", methods=("amortized", "scratch"), shots=(1, 3),
                      steps=(0, 1), train_steps=3, eval_tasks=2, base=base)
    res = run_bench(cfg, tmp_path / "t", progress=False)
    r = res["methods"]["amortized"]["nll"]
    assert "bits_per_char" in r["unconditional"] and "bits_per_char" in r["steps"]["1"]["3"]
    assert "b/c" in (tmp_path / "t" / "results.md").read_text()


def test_bench_text_has_the_ngram_baseline_and_text_fidelity(tmp_path):
    base = replace(Config(), model={"hidden": 16, "context": 16}, data={"max_examples_per_task": 40},
                   train={"meta_batch": 4, "val_every": 5, "val_tasks": 4, "shots": 3, "queries": 4})
    cfg = BenchConfig(data="words:en,fr,de,es,it,pt,nl,sv,pl,ru", methods=("amortized", "ngram"), shots=(1, 3),
                      steps=(0,), train_steps=3, eval_tasks=2, quality_samples=6, base=base)
    res = run_bench(cfg, tmp_path / "t", progress=False)
    ngram = res["methods"]["ngram"]
    assert ngram["train_steps"] == 0 and "bits_per_char" in ngram["nll"]["shots"]["3"]
    assert ngram["nll"]["shots"]["3"]["bits_per_char"] < ngram["nll"]["unconditional"]["bits_per_char"]
    q = ngram["text_quality"]["0"]
    assert q["shots"] == 3 and q["tasks"] == 2 and q["validity"] == 1.0
    assert q["fidelity_chance"] == 0.5 and 0 <= q["fidelity"] <= 1 and q["fidelity_real"] is not None
    md = (tmp_path / "t" / "results.md").read_text()
    assert "| ngram |" in md and "same-script fidelity" in md
    # On image data the text baseline is skipped (with a note); alone, it is an error.
    with pytest.raises(FewgenError, match="text baselines"):
        run_bench(dc_replace(cfg, methods=("ngram",), data="glyphs", base=Config()), tmp_path / "g", progress=False)


def test_bench_rows_for_named_checkpoints_vae_samplers_and_diffusion(omniglot_dir, tmp_path):
    """--ckpt NAME=PATH puts any checkpoint in the table (the diffusion model beside the VAE), on the
    same held-out supports; the VAE gets a row per latent sampler, every row its sampling cost."""
    from fewgen.training import train

    spec = f"omniglot:{omniglot_dir}"
    tiny = {"meta_batch": 4, "queries": 3, "val_every": 100, "val_tasks": 4, "steps": 3}
    vae = replace(Config(), data={"spec": spec}, model={"hidden": 8, "latent": 4, "context": 16, "extra": {"features": 32}},
                  train=tiny)
    diff = replace(Config(), data={"spec": spec}, model={"family": "image_diffusion", "hidden": 8, "context": 16},
                   train=tiny, eval={"sample_steps": 3})
    train(vae, tmp_path / "vae", progress=False)
    train(diff, tmp_path / "diff", progress=False)
    cfg = BenchConfig(data=spec, methods=("vae", "diffusion"), shots=(1,), steps=(0,), train_steps=3, eval_tasks=3,
                      importance_samples=2, quality_tasks=3, quality_samples=4, feature_steps=2,
                      ckpts={"vae": str(tmp_path / "vae"), "diffusion": str(tmp_path / "diff")},
                      base=replace(Config(), eval={"sample_steps": 3}))
    res = run_bench(cfg, tmp_path / "b", progress=False)
    vq, dq = res["methods"]["vae"]["quality"], res["methods"]["diffusion"]["quality"]
    assert set(vq) == {"0", "0:prior"} and vq["0"]["sampler"] == "fusion" and vq["0:prior"]["sampler"] == "prior"
    assert set(dq) == {"0"} and dq["0"]["sampler"] == "guidance 3, 3 ddim steps"
    for q in (vq["0"], vq["0:prior"], dq["0"]):
        assert q["seconds_per_64"] > 0 and 0 <= q["fidelity"] <= 1
    assert vq["0"]["fid"] != vq["0:prior"]["fid"]  # two samplers, two sets of samples
    md = (tmp_path / "b" / "results.md").read_text()
    assert "| vae | 0 | prior |" in md and "| diffusion | 0 | guidance 3, 3 ddim steps |" in md
    with pytest.raises(FewgenError, match="unknown method 'nope'.*--ckpt NAME=PATH"):
        run_bench(dc_replace(cfg, methods=("nope",)), tmp_path / "c", progress=False)
