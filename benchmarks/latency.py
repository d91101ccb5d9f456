"""Adaptation and sampling latency of a 28x28 image VAE, as a user meets it (issue 15, item 4).

Four figures, each the median of ``--repeats`` after warm-up runs, on ``--threads`` threads:

(a) amortized adaptation to 5 shots of a held-out character + 64 samples, in the library
    (:func:`fewgen.adaptation.adapter_for_checkpoint` then :func:`fewgen.sample.sample_images`,
    what ``fewgen sample`` calls); target < 20 ms;
(b) 10 fine-tuning steps on the 5 shots, the path of ``fewgen adapt --steps 10`` (the same
    adapter with ``steps=10``: Adam at ``eval.finetune_lr`` for an amortized checkpoint);
    target < 0.5 s;
(c) ``fewgen sample CKPT --support DIR --n 64 --out grid.png`` end to end as a subprocess:
    Python start-up, imports, checkpoint load, adaptation, sampling, the PNG; target < 3 s.
    Printed beside it: ``python -c "import torch"``, the floor any torch program pays;
(d) held-out IWAE evaluation throughput, ``fewgen eval``'s K-shot NLL with its importance
    samples (:func:`fewgen.evaluate.conditional_nll`, ``eval.importance_samples``/``eval.chunk``)
    on ``--eval-tasks`` test characters, in images x importance samples per second, and the
    growth of peak RSS (``ru_maxrss``) during it, in a fresh process.

Latency does not depend on training, so without ``--ckpt`` the script makes a checkpoint of
the default model with a 2-step :func:`fewgen.training.train` on the Omniglot archives.
``uptime``'s load average is printed: on a shared machine the wall figures are upper bounds,
and the CPU seconds printed beside them (this process's, or the subprocess's) the steadier
figure (with one thread about the wall time an idle machine gives).

    PYTHONPATH=src python benchmarks/latency.py [--ckpt runs/omni2] [--threads 2] [--json lat.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
OMNIGLOT = REPO.parent / "shared" / "data" / "omniglot"
TARGETS = {"adapt_sample_ms": 20.0, "finetune10_ms": 500.0, "cli_sample_s": 3.0}


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def median_ms(fn, repeats: int, warmup: int) -> tuple[float, float]:
    """Median (wall, process CPU) milliseconds of ``fn()`` over ``repeats`` calls after ``warmup``
    ones. On a shared machine the CPU time is the steadier figure: with one thread it is about
    the wall time an idle machine gives (with N threads, up to N times it)."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(1000 * (time.perf_counter() - w))
        cpu.append(1000 * (time.process_time() - c))
    return statistics.median(wall), statistics.median(cpu)


def make_checkpoint(data: str, out: Path) -> Path:
    """The default image VAE after 2 training steps (weights do not change the latency)."""
    from fewgen.config import Config, apply_overrides
    from fewgen.training import train

    cfg = apply_overrides(Config(), [f"data.spec={data}", "train.steps=2", "train.val_every=2", "train.val_tasks=16"])
    return train(cfg, out, progress=False).out


def held_out_support(ck, k: int, folder: Path) -> torch.Tensor:
    """k drawings of the first test character, (K, C, S, S), also written as PNGs into ``folder``."""
    from PIL import Image

    from fewgen.tasks.spec import load_split

    x = load_split(ck.config.data.spec, ck.config.data, "test").examples(0)[:k]
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(x):
        Image.fromarray(((1 - img[0].numpy()) * 255).astype("uint8")).save(folder / f"{i}.png")
    return x


def env(threads: int) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": str(threads)}


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's finished children."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def median_subprocess_s(cmd: list[str], threads: int, repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of a command (after one warm-up run that fills the OS file cache)."""
    wall, cpu = [], []
    for i in range(repeats + 1):
        w, c = time.perf_counter(), children_cpu_s()
        subprocess.run(cmd, check=True, capture_output=True, env=env(threads))
        if i:
            wall.append(time.perf_counter() - w)
            cpu.append(children_cpu_s() - c)
    return statistics.median(wall), statistics.median(cpu)


def iwae_worker(ckpt: str, tasks: int, shots: int, threads: int) -> None:
    """(d) in this process: print one JSON line with the throughput and the peak-RSS growth."""
    torch.set_num_threads(threads)
    from fewgen.adaptation import adapter_for_checkpoint
    from fewgen.checkpoint import load
    from fewgen.evaluate import conditional_nll
    from fewgen.tasks.spec import load_split

    ck = load(ckpt)
    test = load_split(ck.config.data.spec, ck.config.data, "test").seeded_subset(tasks, 0)
    adapter, ecfg = adapter_for_checkpoint(ck), ck.config.eval
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t, c = time.perf_counter(), time.process_time()
    r = conditional_nll(adapter, test, shots, 0, ecfg)
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024  # KiB -> MiB (Linux)
    print(json.dumps({"images": r["queries"], "importance_samples": ecfg.importance_samples, "chunk": ecfg.chunk,
                      "batch_tasks": ecfg.batch_tasks, "seconds": dt, "cpu_seconds": cpu, "tasks": r["tasks"],
                      "image_samples_per_s": r["queries"] * ecfg.importance_samples / dt, "peak_rss_growth_mib": grown}))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", help="an image checkpoint (default: a 2-step one made here)")
    ap.add_argument("--data", default=f"omniglot:{OMNIGLOT}", help="data spec for the made checkpoint")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=10, help="repeats of (a); (b) and (c) take a third of them")
    ap.add_argument("--eval-tasks", type=int, default=8, help="(d): held-out characters scored (0 = all)")
    ap.add_argument("--only", default="abcd", help="the parts to run, e.g. 'ac' (default abcd)")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--iwae-worker", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if args.iwae_worker:
        return iwae_worker(args.ckpt, args.eval_tasks, args.shots, args.threads)
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="latency_"))
    try:
        measure(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(args: argparse.Namespace, tmp: Path) -> None:
    """(a) to (d), printed; in ``args.json`` too."""
    from fewgen.adaptation import adapter_for_checkpoint
    from fewgen.checkpoint import load
    from fewgen.sample import sample_images

    ckpt = Path(args.ckpt) if args.ckpt else make_checkpoint(args.data, tmp / "ckpt")
    ck = load(ckpt)
    support = held_out_support(ck, args.shots, tmp / "support")[None]  # (1, K, C, S, S)
    mask = torch.ones(support.shape[:2], dtype=torch.bool)
    adapter = adapter_for_checkpoint(ck)
    few = max(3, args.repeats // 3)
    print(f"{ckpt}: {ck.model.family} ({ck.info.get('algo')}), {sum(p.numel() for p in ck.model.parameters()):,} "
          f"parameters; K = {args.shots}; {torch.get_num_threads()} threads; load average {load_average()}")
    res: dict = {"threads": torch.get_num_threads(), "load_average_start": load_average(), "checkpoint": str(ckpt)}
    if "a" in args.only:
        res["adapt_sample_ms"], res["adapt_sample_cpu_ms"] = median_ms(
            lambda: sample_images(adapter(support, mask, 0), 64), args.repeats, 3)
        print(f"(a) amortized adaptation + 64 samples: {res['adapt_sample_ms']:8.1f} ms   (target < 20 ms; "
              f"process CPU {res['adapt_sample_cpu_ms']:.1f} ms)")
    if "b" in args.only:
        res["finetune10_ms"], res["finetune10_cpu_ms"] = median_ms(lambda: adapter(support, mask, 10), few, 1)
        print(f"(b) 10 fine-tuning steps on {args.shots} shots: {res['finetune10_ms']:8.1f} ms   (target < 500 ms; "
              f"process CPU {res['finetune10_cpu_ms']:.1f} ms)")
    if "c" in args.only:
        py = [sys.executable]
        res["python_import_torch_s"], res["python_import_torch_cpu_s"] = median_subprocess_s(
            [*py, "-c", "import torch"], args.threads, few)
        res["cli_sample_s"], res["cli_sample_cpu_s"] = median_subprocess_s(
            [*py, "-m", "fewgen", "sample", str(ckpt), "--support", str(tmp / "support"), "--n", "64",
             "--out", str(tmp / "grid.png")], args.threads, few)
        print(f"(c) fewgen sample, end to end:          {res['cli_sample_s']:8.2f} s    (target < 3 s; CPU "
              f"{res['cli_sample_cpu_s']:.2f} s; python -c 'import torch' alone: {res['python_import_torch_s']:.2f} s, "
              f"CPU {res['python_import_torch_cpu_s']:.2f} s)")
    if "d" in args.only:
        out = subprocess.run([sys.executable, __file__, "--iwae-worker", "--ckpt", str(ckpt), "--eval-tasks",
                              str(args.eval_tasks), "--shots", str(args.shots), "--threads", str(args.threads)],
                             check=True, capture_output=True, text=True, env=env(args.threads)).stdout
        res["iwae"] = d = json.loads(out.strip().splitlines()[-1])
        print(f"(d) held-out IWAE, K={args.shots}: {d['image_samples_per_s']:8.0f} images x importance samples / s "
              f"({d['images']} images x {d['importance_samples']} in {d['seconds']:.1f} s, CPU {d['cpu_seconds']:.1f} s, "
              f"{d['tasks']} tasks, "
              f"chunks of {d['chunk']}, {d['batch_tasks']} tasks a batch); peak RSS +{d['peak_rss_growth_mib']:.0f} MiB")
    res["load_average_end"] = load_average()
    print(f"load average after: {res['load_average_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
