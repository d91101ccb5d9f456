"""Held-out evaluation: NLL of query examples given K support examples of the same task.

The unconditional NLL (empty support) is reported too, so the gain from conditioning shows.
NLL is importance-weighted (IWAE) for latent-variable models, in nats per example, with a
95% CI over tasks; image models add bits per sub-pixel (bits/dim: nats / (C*S*S ln 2); colour
models score 8-bit levels, so 8 bits/dim is a uniform guess).

examples:
  fewgen eval runs/omni --data omniglot:../shared/data/omniglot --split test --shots 1,5 --json eval.json
  fewgen eval runs/user --data folder:./my_chars --split all --shots 1
  fewgen eval runs/maml --steps 0,1,5,10 --json maml.json       # after 0/1/5/10 fine-tuning steps
  fewgen eval runs/maml --algo scratch --steps 0,1,5,10           # baseline: fresh init + fine-tuning
  fewgen eval runs/omni --shots 1 --metrics fid,fidelity,memorization,sensitivity --json quality.json

Image sample quality (--metrics fid,kid,fidelity,diversity,memorization,sensitivity) is scored on
a domain feature network trained on the checkpoint's meta-train tasks, each figure beside what
real held-out examples get; "sensitivity" draws the samples again from the same seed with each
task's support swapped for another task's: how far they move, over how far apart the two tasks'
real examples are (0 = the seed alone decides the sample; about 1 = it follows the support),
beside the same ratio for another seed and the same support ("seed").

Text models add bits per character (per Unicode character, EOS counted as one; a task's figure
is its total bits over its total characters) to every entry, with "by_script": the mean over the
tasks of each script (the dominant Unicode script of a task's strings: LATIN, CYRILLIC, ...), so
that a mean over mostly-Latin held-out languages cannot hide a script the model fails on. The
"samples" entry (--samples N per task, after adapting to K = max(--shots) examples at the largest
--steps, every task sampled alone from the same seed) gives novelty and validity against the
support and the checkpoint's meta-training strings, and "sensitivity": each task is paired with
another (of its script when there is one) and its samples set beside those drawn with the same
seed from the other task's support: the share of identical samples (1 = the support is ignored)
and their mean normalised edit distance, beside that of real words of the two tasks (what two
languages differ by). --metrics fidelity adds text fidelity: the share of samples that character
n-gram language identifiers, fit on each task's other examples, attribute to the support's task
(among all tasks and among those of its script), beside the same figure for real held-out
strings (the ceiling) and chance; per script too.

The classical baseline comes in the same table ("baseline"; --no-baseline skips it): a trigram of
all the checkpoint's meta-train text mixed with a trigram of the support, the mixture weight
chosen on its meta-val split (text_ngram order 3, fit by counting in seconds, as
`fewgen train --set model.family=text_ngram` fits it), on the same episodes, without
fine-tuning steps; with its own samples, fidelity and sensitivity when --samples > 0.

  fewgen eval runs/words --data text:./my_texts --split all --shots 1,5,10 --json text.json
  fewgen eval runs/words --split test --shots 10 --metrics nll,fidelity --samples 50

Fine-tuning (--steps > 0) repeats the inner loop the checkpoint was meta-trained with: SGD at its
inner learning rate (its learned Meta-SGD rates if it has them; --lr overrides), on the parameters
of train.adapt_params, with its support augmentation and step selection (--adapt-params and
--set train.KEY=VALUE override them). Steps beyond the meta-trained train.inner_steps are noted
in the report ("notes"). With several --steps, NLL against fine-tuning steps is plotted per K
(--plot, default next to --json).

  fewgen eval runs/maml --steps 0,1,2,5,10,20 --set train.inner_select=heldout --json maml.json   # + maml.png
"""

from __future__ import annotations

import argparse

from ..config import replace
from .common import (adapt_train_config, add_adapt_args, add_diffusion_arguments, diffusion_eval_config,
                     finite_float, text_guidance_arg, write_json)

HELP = "evaluate held-out conditional NLL (JSON report)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("--data", metavar="SPEC", help="data spec (default: the checkpoint's training data)")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    p.add_argument("--shots", default="1,5", help="comma-separated K values")
    p.add_argument("--steps", default="0", help="comma-separated fine-tuning step counts")
    p.add_argument("--algo", help="adapt as this algorithm would (default: the checkpoint's); "
                                  "'scratch' evaluates a fresh random init of the same model")
    p.add_argument("--lr", type=finite_float, default=None, help="inner learning rate (default: the checkpoint's)")
    p.add_argument("--importance-samples", type=int, default=None, help="IWAE samples (default 100)")
    p.add_argument("--max-tasks", type=int, default=None, help="evaluate at most this many tasks")
    p.add_argument("--max-queries", type=int, default=None, metavar="Q",
                   help="query examples scored per task and K (default: the checkpoint's eval.max_queries, 15)")
    p.add_argument("--max-examples", type=int, default=None, metavar="N",
                   help="use at most N examples per task (default: the checkpoint's data.max_examples_per_task)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--samples", type=int, default=20, metavar="N",
                   help="text: samples per task for novelty, validity and support sensitivity (default 20; 0 = none)")
    p.add_argument("--no-baseline", action="store_true",
                   help="text: skip the classical baseline row (a trigram of the meta-train text mixed with one of "
                        "the support, fit by counting on the checkpoint's meta-train split)")
    p.add_argument("--latent", choices=("fusion", "prior"), default=None,
                   help="images: the latent sampler the quality metrics use (default: the checkpoint's eval.latent)")
    add_diffusion_arguments(p)
    p.add_argument("--metrics", default="nll", help="comma-separated: nll,fid,kid,fidelity,diversity,memorization,"
                   "sensitivity (image sample quality on a domain feature network trained on the checkpoint's "
                   "meta-train tasks; sensitivity: do the samples move when the support does); "
                   "text: nll,fidelity (samples attributed to the support's task by character n-gram language "
                   "identifiers fit on each task's other examples)")
    p.add_argument("--feature-steps", type=int, default=300, help="episodes to train the domain feature network")
    p.add_argument("--json", metavar="OUT.json", help="write the report here")
    p.add_argument("--plot", metavar="OUT.png", help="NLL against fine-tuning steps per K (default with several "
                                                     "--steps and --json: OUT.png beside the JSON)")
    add_adapt_args(p)
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..checkpoint import check_data, load
    from ..adaptation import adapter_for_checkpoint, fine_tuning, steps_note
    from ..errors import FewgenError
    from ..evaluate import evaluate, format_report
    from ..meta import ALGORITHMS, UNTRAINED
    from ..tasks.spec import load_split

    from .paths import out_file, spec_paths

    if args.json:
        out_file(args.json, "--json", "eval.json", inputs=[args.checkpoint, *spec_paths(args.data)])
    if args.plot:
        out_file(args.plot, "--plot", "steps.png", inputs=[args.checkpoint], image=True)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    bad = [m for m in metrics if m not in QUALITY_METRICS + ("nll",)]
    if bad:
        raise FewgenError(f"unknown --metrics '{bad[0]}'; valid: nll, {', '.join(QUALITY_METRICS)}")
    ck = load(args.checkpoint)
    if args.algo is not None and args.algo not in (*ALGORITHMS, *UNTRAINED):
        raise FewgenError(f"unknown --algo '{args.algo}'; valid: {', '.join(sorted((*ALGORITHMS, *UNTRAINED)))}")
    cfg = ck.config
    spec = args.data or cfg.data.spec
    ecfg = _eval_config(cfg, args)
    ts = load_split(spec, _data_config(cfg, spec, args), args.split)
    check_data(ck, ts.modality, ts.example_shape, spec, args.checkpoint)
    algo = args.algo or ck.info.get("algo", cfg.train.algo)
    tc = fine_tuning(ck, algo, args.lr, adapt_train_config(cfg, args)).train
    adapt_fn = adapter_for_checkpoint(ck, algo=algo, lr=args.lr, seed=ecfg.seed, train=tc)
    text = ts.modality == "text"
    quality = [m for m in metrics if m != "nll"]
    if text and quality and (quality != ["fidelity"] or args.samples <= 0):
        raise FewgenError(f"--metrics {','.join(quality)}: for text only fidelity, with --samples > 0 "
                          "(fid, kid, diversity, memorization and sensitivity are for images; text samples "
                          "always report their sensitivity)")
    report = _text_report(ck, ts, adapt_fn, ecfg, args, "fidelity" in quality) if text else \
        evaluate(adapt_fn, ts, ecfg, progress=not args.quiet)
    if quality and not text:
        report["quality"] = _quality(ck, cfg, ts, adapt_fn, ecfg, quality, args)
    note = steps_note(ck, algo, ecfg.steps)
    report = {"data": spec, "split": args.split, "checkpoint": str(args.checkpoint), "algo": algo,
              "adapted": bool(ck.info.get("adapted")),
              "fine_tuning": {"adapt_params": tc.adapt_params, "augment": tc.inner_augment, "select": tc.inner_select,
                              "trained_inner_steps": cfg.train.inner_steps},
              "notes": [note] if note else [], **report}
    print(format_report(report))
    if note:
        print(f"note: {note}")
    if args.json:
        print(f"wrote {write_json(args.json, report)}")
    plot = args.plot or (str(Path(args.json).with_suffix(".png")) if args.json and len(ecfg.steps) > 1 else None)
    if plot:
        from ..plot import plot_step_curves

        print(f"wrote {plot_step_curves({algo: report}, plot)}")
    return 0


QUALITY_METRICS = ("fid", "kid", "fidelity", "diversity", "memorization", "sensitivity")


def _text_report(ck, ts, adapt_fn, ecfg, args: argparse.Namespace, fidelity: bool) -> dict:
    """The text report of the held-out tasks ``ts``: NLL and bits per character per K x steps
    with ``by_script``, the ``samples`` entry (--samples > 0) and the classical ``baseline``
    (unless --no-baseline, or the checkpoint is that family)."""
    from ..evaluate import add_script_groups, evaluate, training_strings
    from ..metrics.text import bits_per_char_examples
    from ..metrics.text_groups import task_scripts
    from ..models import TEXT_BASELINE

    ts = ts.seeded_subset(ecfg.max_tasks, ecfg.seed)  # the --max-tasks subset, as evaluate draws it
    scripts = task_scripts(ts)  # once per task, for every entry
    report = add_script_groups(evaluate(adapt_fn, ts, ecfg, not args.quiet, bits_per_char_examples), scripts)
    # novelty is against the checkpoint's meta-train strings (none where that data is not on this machine)
    seen = training_strings(ck.config.data, missing_ok=True) if args.samples > 0 else set()
    if args.samples > 0:
        guidance = text_guidance_arg(ck.model, ecfg, args)
        report["samples"] = _text_samples(ts, adapt_fn, ecfg, args.samples, fidelity, scripts, seen, guidance)
    if not args.no_baseline and ck.model.family != TEXT_BASELINE:  # an n-gram checkpoint is its own baseline
        report["baseline"] = _baseline(ck, ts, ecfg, args, fidelity, scripts, seen)
    return report


def _text_samples(ts, adapt_fn, ecfg, n: int, fidelity: bool, scripts, seen: set[str], guidance: float) -> dict:
    """Samples of the held-out text tasks ``ts`` at the largest K and steps: validity, novelty
    against the training strings ``seen``, support sensitivity, and (``fidelity``) whether they
    read like their task."""
    from ..evaluate import text_sample_report

    return {**text_sample_report(adapt_fn, ts, seen, max(ecfg.shots), max(ecfg.steps), n, ecfg.seed,
                                 ecfg.batch_tasks, fidelity=fidelity, scripts=scripts, guidance=guidance),
            "guidance": guidance, "training_strings": len(seen)}


def _baseline(ck, ts, ecfg, args: argparse.Namespace, fidelity: bool, scripts, seen: set[str]) -> dict:
    """The text baseline fit on the checkpoint's own meta-train split, on the same episodes
    (:mod:`fewgen.text_baseline`); ``{"name", "skipped": why}`` if that split cannot be read."""
    from ..errors import FewgenError
    from ..text_baseline import NAME, evaluate_text_baseline, fit_text_baseline

    try:
        base = fit_text_baseline(ck.config)
    except (FewgenError, OSError) as e:
        return {"name": NAME, "skipped": f"cannot fit it on the checkpoint's meta-train data ({e})"}
    return evaluate_text_baseline(base, ts, ecfg, scripts, args.samples, fidelity, seen, not args.quiet)


def _data_config(cfg, spec: str, args: argparse.Namespace):
    """The checkpoint's data config on ``spec`` (``--data``), with ``--max-examples``."""
    changes = {"spec": spec} if args.max_examples is None else {"spec": spec, "max_examples_per_task": args.max_examples}
    return replace(cfg, data=changes).data


def _eval_config(cfg, args: argparse.Namespace):
    """The checkpoint's eval config with the command line's shots, steps, split and options."""
    from ..evaluate import parse_int_list

    changes = {"shots": parse_int_list(args.shots, "shots"), "steps": parse_int_list(args.steps, "steps"),
               "split": args.split}
    for key, val in (("importance_samples", args.importance_samples), ("max_tasks", args.max_tasks),
                     ("max_queries", args.max_queries),
                     ("seed", args.seed), ("latent", args.latent)):
        if val is not None:
            changes[key] = val
    return diffusion_eval_config(replace(cfg, eval=changes), args)


def _quality(ck, cfg, ts, adapt_fn, ecfg, wanted: list[str], args: argparse.Namespace) -> dict:
    """Sample-quality metrics of K-shot adaptation on held-out tasks (:mod:`fewgen.image_quality`, as
    ``fewgen bench``): K = max(--shots), after 0 steps and max(--steps), the configured sampler."""
    from pathlib import Path

    from ..errors import FewgenError
    from ..image_quality import quality_reports, quality_set
    from ..tasks.spec import load_split

    out = Path(args.json).parent if args.json else Path(args.checkpoint) / "eval_quality"
    q = quality_set(load_split(cfg.data.spec, cfg.data, "train"), ts, max(ecfg.shots), ecfg.max_tasks or 12,
                    ecfg.seed, out / "feature_net", args.feature_steps, not args.quiet)
    if q is None:
        raise FewgenError(f"{args.data or cfg.data.spec}: too few examples per task for sample-quality metrics")
    per_steps = quality_reports(adapt_fn, q, max(ecfg.steps), ecfg, seed=ecfg.seed, grid=out / "samples_eval.png",
                                label="eval", all_samplers=False, sensitivity="sensitivity" in wanted)
    # each figure beside real held-out data's value under the same protocol, and the levels to read them by
    keep = {w + end for w in wanted for end in ("", "_ci95", "_real", "_real_ci95", "_seed", "_seed_ci95")}
    keep |= {"tasks", "samples_per_task", "shots", "real_per_task", "fidelity_real", "fidelity_chance",
             "memorization_chance", "sampler", "seconds_per_64"}
    keep |= {w + end for w in wanted if w in ("fid", "kid") for end in ("_pooled", "_pooled_real")}  # all tasks pooled
    return {s: {k: v for k, v in r.items() if k in keep} for s, r in per_steps.items()}
