"""The held-out table of an image zoo model's card, from the JSON reports of
``benchmarks/zoo_images.sh`` (so no figure on a card is typed by hand):

    python benchmarks/zoo_card_figures.py runs/zoo_cards/glyphs-diffusion.k1.json runs/zoo_cards/glyphs-diffusion.k5.json

One row per report (its K): NLL (nats per image, 95% CI over tasks), then each sample-quality
figure beside what real held-out drawings score under the same protocol.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _f(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def row(report: dict) -> str:
    """One markdown row: K, NLL at K (and unconditional), FID, KID, fidelity, diversity, memorisation."""
    q = next(iter(report["quality"].values()))
    k = str(q["shots"])
    nll = report["shots"][k]
    cells = [k, f"{nll['nll_nats']:.1f} ± {nll['ci95']:.1f} (K=0: {report['unconditional']['nll_nats']:.1f})",
             f"{_f(q['fid'])} (real {_f(q.get('fid_real'))})", f"{_f(q['kid'], 3)} (real {_f(q.get('kid_real'), 3)})",
             f"{_f(q['fidelity'])} (real {_f(q['fidelity_real'])}, chance {_f(q['fidelity_chance'])})",
             f"{_f(q['diversity'])} (real {_f(q.get('diversity_real'))})",
             f"{_f(q['memorization'], 3)} (real {_f(q.get('memorization_real'), 3)}, "
             f"bound {_f(q.get('memorization_chance'), 3)})"]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reports", nargs="+", help="fewgen eval --json reports (one per K)")
    args = p.parse_args()
    reports = [json.loads(Path(f).read_text(encoding="utf-8")) for f in args.reports]
    q = next(iter(reports[0]["quality"].values()))
    print(f"{q['tasks']} held-out tasks, {q['samples_per_task']} samples each ({q.get('sampler', '')}); "
          f"{q.get('real_per_task', '?')} real held-out examples per task\n")
    print("| K | NLL (nats/image) | FID ↓ | KID ↓ | fidelity ↑ | diversity (≈1) | memorisation ↓ |")
    print("|---|---|---|---|---|---|---|")
    for r in reports:
        print(row(r))


if __name__ == "__main__":
    main()
