"""Server-side latency of ``fewgen serve`` for one image request (no browser, no network).

For K uploaded PNGs of a held-out glyph, times what a request does on the server, with the
handlers the page calls (:func:`fewgen.serve.personalise_images`): amortized adaptation (one
forward pass over the support) + 64 samples, and adaptation with 10 fine-tuning steps; the rest
of a request (decoding the uploads, scoring the support, zipping the adapted checkpoint) is
reported beside. Medians over --repeats after one warm-up request. Targets (issue 16):
adaptation + 64 samples < 100 ms, 10 fine-tuning steps < 2 s, on 2 CPU cores.

    PYTHONPATH=src python benchmarks/serve_latency.py runs/glyphs [--threads 2] [--shots 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import torch


def held_out_pngs(spec: str, k: int) -> list[tuple[str, bytes]]:
    """k drawings of the first held-out task of ``spec``, as PNG bytes (what a browser uploads)."""
    from PIL import Image

    from fewgen.config import DataConfig
    from fewgen.tasks.spec import load_split

    out = []
    for i, x in enumerate(load_split(spec, DataConfig(), "test").examples(0)[:k]):
        buf = io.BytesIO()
        Image.fromarray(((1 - x[0].numpy()) * 255).astype("uint8")).save(buf, "PNG")
        out.append((f"{i}.png", buf.getvalue()))
    return out


def timed(fn) -> tuple[float, float]:
    """(wall, process CPU) milliseconds of one call. On a machine shared with other work the CPU
    time is the steadier figure: with one thread it is about the wall time the machine alone gives."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return 1000 * (time.perf_counter() - w), 1000 * (time.process_time() - c)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="an image checkpoint folder")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from fewgen.adaptation import adapter_for_checkpoint
    from fewgen.sample import sample_images
    from fewgen.serve import Limits, Registry, decode_images, personalise_images

    served = Registry([args.checkpoint]).served.popitem()[1]
    ck = served.checkpoint
    uploads = held_out_pngs(ck.config.data.spec, args.shots)
    support = decode_images(uploads, ck.config.data, Limits())[None]  # (1, K, C, S, S)
    mask = torch.ones(support.shape[:2], dtype=torch.bool)
    adapter = adapter_for_checkpoint(ck)
    print(f"{args.checkpoint}: {ck.model.family}, {sum(p.numel() for p in ck.model.parameters())} parameters; "
          f"K = {len(uploads)}; {args.threads} threads; medians of {args.repeats} after a warm-up; "
          f"wall / process CPU ms; load average {' '.join(f'{x:.1f}' for x in __import__('os').getloadavg())}")
    jobs = {
        "amortized adapt + 64 samples": lambda: sample_images(adapter(support, mask, 0), 64),
        "10 fine-tuning steps": lambda: adapter(support, mask, 10),
        "whole request, amortized": lambda: personalise_images(served, uploads, n=64),
    }
    for label, job in jobs.items():
        runs = [timed(job) for _ in range(args.repeats + 1)][1:]
        wall, cpu = (statistics.median(col) for col in zip(*runs))
        print(f"{label:<30} {wall:>9.1f} wall {cpu:>9.1f} cpu")
    print("the whole request adds decoding the PNGs, the support's NLL (IWAE, eval.importance_samples) "
          "and zipping the adapted checkpoint")


if __name__ == "__main__":
    main()
