"""Fine-tuning curves from `fewgen eval --json` reports: NLL against steps per method and K,
paired differences against each method's own 0 steps and against transfer (issue 18).

    PYTHONPATH=src python benchmarks/finetune_curves.py --out curves.png maml=eval_maml.json transfer=eval_transfer.json

Prints a Markdown table (mean ± 95% CI over the same held-out tasks) and writes the PNG.
"""

from __future__ import annotations

import argparse
import json

from fewgen.bench import paired_comparisons, paired_markdown
from fewgen.plot import plot_step_curves


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reports", nargs="+", metavar="METHOD=EVAL.json")
    p.add_argument("--out", default="curves.png")
    args = p.parse_args()
    reports = {m: json.load(open(path)) for m, path in (r.split("=", 1) for r in args.reports)}
    per_task = {m: {s: {k: e["per_task"] for k, e in per_k.items()} for s, per_k in r["steps"].items()}
                for m, r in reports.items()}
    shots = sorted({k for r in reports.values() for per_k in r["steps"].values() for k in per_k}, key=int)
    steps = sorted({s for r in reports.values() for s in r["steps"]}, key=int)
    print("| method | " + " | ".join(f"K={k} s={s}" for k in shots for s in steps) + " |")
    print("|---|" + "---|" * (len(shots) * len(steps)))
    for m, r in reports.items():
        cells = [f"{r['steps'][s][k]['nll_nats']:.1f} ± {r['steps'][s][k]['ci95']:.1f}" for k in shots for s in steps]
        print(f"| {m} | " + " | ".join(cells) + " |")
    notes = {m: {"notes": r.get("notes", [])} for m, r in reports.items()}
    print("\n".join(paired_markdown({"paired": paired_comparisons(per_task), "methods": notes})))
    print(f"wrote {plot_step_curves(reports, args.out)}")


if __name__ == "__main__":
    main()
