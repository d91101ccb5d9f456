"""Text guidance: how much should samples lean toward the support? (chooses eval.text_guidance)

For a ``text_transformer`` checkpoint, on its held-out languages (by script), with the same
seeded K-shot supports and the same seed for every guidance g: text fidelity (character 4-gram
language identifiers; real held-out words give the ceiling), support sensitivity (same seed,
two supports), novelty (not in the support or the training words), distinct samples (the
diversity a sharper sampler can lose), foreign characters (the share of sample characters
that none of the language's words uses: letters of other languages) and a few samples of
two languages. g = 1 is the
model's own distribution.

    python benchmarks/text_guidance.py runs/words --guidance 1,1.5,2,2.5,3 --split val   # choose g here
    python benchmarks/text_guidance.py runs/words --guidance 1,2 --samples 50            # then report
"""

from __future__ import annotations

import argparse

from fewgen.adaptation import adapter_for_checkpoint
from fewgen.checkpoint import load
from fewgen.evaluate import text_sample_report
from fewgen.metrics.text_groups import task_scripts
from fewgen.models.bytes import decode_batch
from fewgen.tasks.spec import load_split


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--guidance", default="1,1.5,2,3")
    p.add_argument("--shots", type=int, default=10)
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--show", default="fi,tr,nl,ro", help="languages whose first samples are printed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="test", help="val: choose g on the meta-validation languages, not the test ones")
    p.add_argument("--plausible", type=float, default=None, help="override GUIDANCE_PLAUSIBLE (the constraint's ratio)")
    args = p.parse_args()
    if args.plausible is not None:
        import fewgen.models.text_transformer as tt

        tt.GUIDANCE_PLAUSIBLE = args.plausible
    ck = load(args.checkpoint)
    cfg = ck.config
    ts = load_split(cfg.data.spec, cfg.data, args.split)
    train = load_split(cfg.data.spec, cfg.data, "train")
    seen = {s for i in range(len(train)) for s in decode_batch(train.examples(i))}
    scripts = task_scripts(ts)
    alphabet = {t: {c for w in decode_batch(ts.examples(i)) for c in w} for i, t in enumerate(ts.names)}
    adapt_fn = adapter_for_checkpoint(ck, algo="amortized", seed=args.seed)
    print(f"{'g':>4} {'script':<9} {'fidelity':>8} {'real':>5} {'chance':>6} {'identical':>9} {'edit':>5} "
          f"{'edit real':>9} {'novel':>6} {'distinct':>8} {'foreign':>7}")
    for g in [float(x) for x in args.guidance.split(",")]:
        r = text_sample_report(adapt_fn, ts, seen, args.shots, 0, args.samples, args.seed, fidelity=True,
                               scripts=scripts, guidance=g)
        for script, f in sorted(r["by_script"].items(), key=lambda kv: -kv[1]["tasks"]):
            s = r["sensitivity"]["by_script"].get(script, {})
            names = [t for t in r["per_task"] if scripts[t] == script]
            distinct = sum(len(set(r["per_task"][t]["samples"])) / args.samples for t in names) / len(names)
            chars = [(c in alphabet[t]) for t in names for w in r["per_task"][t]["samples"] for c in w]
            foreign = 1 - sum(chars) / max(len(chars), 1)
            print(f"{g:>4g} {script.lower():<9} {f['fidelity_same_script']:>8.2f} {f['fidelity_real_same_script']:>5.2f} "
                  f"{f['fidelity_chance_same_script']:>6.2f} {s.get('identical', float('nan')):>9.2f} "
                  f"{s.get('edit_distance', float('nan')):>5.2f} {s.get('edit_distance_real', float('nan')):>9.2f} "
                  f"{f['novelty']:>6.2f} {distinct:>8.2f} {foreign:>7.3f}")
        for t in args.show.split(","):
            if t in r["per_task"]:
                print(f"     {t}: " + " ".join(r["per_task"][t]["samples"][:12]))
    for t in args.show.split(","):
        if t in r["per_task"]:
            print(f"     {t} support: " + " ".join(r["per_task"][t]["support"]))


if __name__ == "__main__":
    main()
