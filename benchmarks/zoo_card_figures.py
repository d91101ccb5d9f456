"""The held-out table of image models, from ``fewgen eval --json`` reports (those of
``benchmarks/zoo_images.sh`` for a zoo card, of ``benchmarks/icons_heldout.sh`` for the colour
table), so no figure is typed by hand:

    python benchmarks/zoo_card_figures.py runs/zoo_cards/glyphs-diffusion.k1.json runs/zoo_cards/glyphs-diffusion.k5.json
    python benchmarks/zoo_card_figures.py diffusion=runs/icons/diffusion/heldout_k1.json vae=runs/icons/vae/heldout_k1.json

One row per report and fine-tuning step count (``NAME=`` labels it): its K, the NLL (nats per
image, 95% CI over tasks; bits per sub-pixel) after those steps, then each
sample-quality figure beside what real held-out examples score under the same protocol. FID is
the per-task mean where every task has enough real examples for one, else pooled over tasks.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _f(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _fid(q: dict) -> str:
    if q.get("fid") is None and q.get("fid_pooled") is not None:
        return f"{_f(q['fid_pooled'])} pooled (real {_f(q.get('fid_pooled_real'))})"
    return f"{_f(q.get('fid'))} (real {_f(q.get('fid_real'))})"


def _nll(r: dict) -> str:
    bpd = f", {r['bits_per_dim']:.3f} b/d" if "bits_per_dim" in r else ""
    return f"{r['nll_nats']:.1f} ± {r['ci95']:.1f}{bpd}"


def rows(report: dict, label: str = "") -> list[str]:
    """One markdown row per fine-tuning step count the report measured samples at."""
    return [row(report, steps, label) for steps in report["quality"]]


def row(report: dict, steps: str, label: str = "") -> str:
    """One markdown row: K, NLL at K after ``steps`` fine-tuning steps (and unconditional), FID,
    KID, fidelity, diversity, memorisation."""
    q = report["quality"][steps]
    k = str(q["shots"])
    nll = report["steps"][steps][k]
    step_note = f" after {steps} steps" if steps != "0" else ""
    cells = ([label] if label else []) + [
             k, f"{_nll(nll)}{step_note} (K=0: {_nll(report['unconditional'])})", _fid(q), f"{_f(q.get('kid'), 3)} (real {_f(q.get('kid_real'), 3)})",
             f"{_f(q.get('fidelity'))} (real {_f(q.get('fidelity_real'))}, chance {_f(q.get('fidelity_chance'))})",
             f"{_f(q.get('diversity'))} (real {_f(q.get('diversity_real'))})",
             f"{_f(q.get('memorization'), 3)} (real {_f(q.get('memorization_real'), 3)}, "
             f"bound {_f(q.get('memorization_chance'), 3)})"]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reports", nargs="+", help="fewgen eval --json reports (one per K), each as FILE or NAME=FILE")
    args = p.parse_args()
    labelled = [(a.partition("=")[0], a.partition("=")[2]) if "=" in a else ("", a) for a in args.reports]
    reports = [(name, json.loads(Path(f).read_text(encoding="utf-8"))) for name, f in labelled]
    for name, r in reports:
        q = next(iter(r["quality"].values()))
        print(f"{name or r['checkpoint']}: K={q['shots']}, {q['tasks']} held-out tasks, {q['samples_per_task']} "
              f"samples each ({q.get('sampler', '')}); {q.get('real_per_task', '?')} real held-out examples per task")
    named = any(name for name, _ in reports)
    print("\n|" + (" model |" if named else "") + " K | NLL (nats/image) | FID ↓ | KID ↓ | fidelity ↑ | diversity (≈1) | memorisation ↓ |")
    print("|" + "---|" * (8 if named else 7))
    for name, r in reports:
        print("\n".join(rows(r, name)))


if __name__ == "__main__":
    main()
