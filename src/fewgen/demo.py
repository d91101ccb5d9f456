"""The first thing a new user runs: the zoo's samples of held-out characters and words
(seconds, :mod:`fewgen.zoo.tour`), then meta-train on the embedded glyphs, evaluate on held-out
scripts, and write sample grids for characters the model never saw.

Everything is offline (fonts inside matplotlib) and bounded in time (a few minutes on 2 CPU
cores).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from .adaptation import adapt, adapter_for_checkpoint
from .checkpoint import load
from .config import Config, replace
from .evaluate import evaluate, format_report
from .pictures import save_grid
from .sample import sample_images, write_sample_grid
from .tasks.spec import load_tasks, splits_of
from .training import train


def demo_config(train_seconds: float, seed: int = 0) -> Config:
    """The demo's configuration: glyphs, amortized image VAE, a time budget.

    The VAE without attention: in three minutes it trains about 1.8x the steps of the default
    (attending) one. Measured with ``make demo`` on the same loaded 2-core machine (a training on
    the other core), the held-out NLL after the demo's 180 s was 168.6 / 161.4 / 150.5 nats
    (K = 0, 1, 5; 187 steps) with attention and 145.5 / 137.8 / 132.5 without (338 steps).
    Attention wins at 25 CPU-minutes (docs/results.md), not at three."""
    cfg = Config()
    return replace(cfg, data={"spec": "glyphs"}, model={"extra": {"attention": False}},
                   train={"steps": 20_000, "max_seconds": train_seconds, "seed": seed, "val_every": 250,
                          "ckpt_every": 250},
                   eval={"shots": (1, 5), "steps": (0,), "max_tasks": 24, "importance_samples": 100,
                         "seed": seed})


def run_demo(out: str | Path = "runs/demo", train_seconds: float = 180.0, seed: int = 0,
             progress: bool = True, num_characters: int = 6) -> dict[str, Any]:
    """Train, evaluate and sample; returns (and writes to ``out/metrics.json``) the results."""
    from .zoo.tour import tour

    out = Path(out)
    t0 = time.time()
    shown = tour(out, seed)  # the zoo first: samples of held-out characters and words in seconds
    if progress:
        for r in shown:
            print(f"zoo: {r.name} on held-out {', '.join(r.tasks)} ({r.seconds:.1f} s): {r.path}", flush=True)
    cfg = demo_config(train_seconds, seed)
    tasks = load_tasks(cfg.data.spec, cfg.data)
    res = train(cfg, out / "model", progress=progress, tasks=tasks)
    ck = load(out / "model")
    test = splits_of(tasks, cfg.data)["test"]
    report = evaluate(adapter_for_checkpoint(ck, seed=seed), test, cfg.eval, progress=progress)

    # Sample grids for a few held-out characters: 5 shots in, 32 samples out.
    g = torch.Generator().manual_seed(seed)
    ids = torch.randperm(len(test), generator=g)[:num_characters].tolist()
    rows, labels, grids = [], [], []
    for n, i in enumerate(ids):
        ex = test.examples(i)
        support = ex[torch.randperm(len(ex), generator=g)[:5]]
        samples = sample_images(adapt(ck.model, support[None]), 32, seed + n, ecfg=ck.config.eval)[0]
        slug = test.names[i].split()[0].replace("+", "")
        grids.append(str(write_sample_grid(out / f"samples_{slug}.png", support, samples)))
        rows += [support, samples[:12]]
        labels += [test.names[i].split()[0] + " shots", "samples"]
    overview = save_grid(out / "samples.png", rows, labels=labels, gap_after=list(range(1, len(rows), 2)))
    result = {
        "data": cfg.data.spec, "split": "test", "train_steps": res.steps, "train_seconds": round(res.seconds, 1),
        "best_val_loss": res.best_val, "eval": report, "sample_grids": grids, "overview": str(overview),
        "held_out_characters": [test.names[i] for i in ids], "total_seconds": round(time.time() - t0, 1),
        "zoo": {r.name: {"path": str(r.path), "held_out": r.tasks, "seconds": round(r.seconds, 2)} for r in shown},
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    if progress:
        print(format_report(report))
    return result
