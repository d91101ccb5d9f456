"""A table of image sample-quality reports (``fewgen eval --json``), one row per file.

Each row: the sampler (guidance, steps), fidelity, diversity and memorisation with their 95%
intervals over tasks, beside the real held-out examples' figures, and whether the setting meets
"fidelity at least the real examples', memorisation no higher" (the colour issue's target):

    python benchmarks/quality_sweep.py runs/icons_g/ema/val_*_k1.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def row(path: Path) -> tuple[tuple[str, float], str]:
    """(sort key: sampler kind and guidance, the row's text) for one report's quality at the fewest
    fine-tuning steps."""
    quality = json.loads(path.read_text(encoding="utf-8"))["quality"]  # {steps: figures}
    q = quality[min(quality, key=int)]
    fid, mem = q["fidelity"], q["memorization"]
    meets = fid >= q["fidelity_real"] and mem <= q["memorization_real"]
    cells = [f"{q['sampler']:<32}", f"{fid:.3f} ± {q['fidelity_ci95']:.3f} (real {q['fidelity_real']:.3f})",
             f"{q.get('diversity', float('nan')):.2f} (real {q.get('diversity_real', float('nan')):.2f})",
             f"{mem:.3f} ± {q['memorization_ci95']:.3f} (real {q['memorization_real']:.3f})", "yes" if meets else "no"]
    guidance, steps = q["sampler"].split(", ")  # "guidance 2, 10 ddim steps"
    return (steps.split()[1], float(guidance.split()[-1])), " | ".join(cells)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reports", nargs="+", type=Path)
    args = p.parse_args()
    rows = sorted((row(f) for f in args.reports), key=lambda r: r[0])
    print(" | ".join(["sampler", "fidelity ↑", "diversity (≈1)", "memorisation ↓", "meets"]))
    for _, text in rows:
        print(text)


if __name__ == "__main__":
    main()
