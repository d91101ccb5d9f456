"""Where does the support's information go? Bits/char per K and the cache's share, by group.

For a text checkpoint (``text_transformer`` or ``text_ngram``), on the held-out languages of
the checkpoint's data (grouped by script: the training scripts first) and on a few training
languages (new words of languages it was trained on), with the same seeded supports and
queries for every K:

- bits/char at K = 0, 1, 5, 10 and the gain from K = 0 to the largest K: what the support is
  worth in likelihood;
- ``text_transformer``: the mean mixture weight the gate gives the match cache (1 - the
  Transformer's weight) at the largest K, and the Transformer's own bits/char there (its
  expert alone): a gate that trusts the Transformer on held-out languages as much as on the
  training ones has learned to recognise, not to read.

    python benchmarks/text_support_use.py runs/words --queries 200
    python benchmarks/text_support_use.py runs/words runs/ngram --shots 0,1,5,10

Prints one table per checkpoint; ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict

import torch

from fewgen.checkpoint import load
from fewgen.metrics.text import char_counts
from fewgen.metrics.text_fidelity import dominant_script
from fewgen.models.bytes import decode_batch
from fewgen.tasks.base import episode_generator
from fewgen.tasks.spec import load_split


def episodes(ts, shots: int, queries: int, seed: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """Per task: (name, support (1, K, L), queries (1, Q, L)), the same draw for every K <= shots."""
    out = []
    for i, name in enumerate(ts.names):
        ex = ts.examples(i)
        perm = torch.randperm(len(ex), generator=episode_generator(seed, i))
        out.append((name, ex[perm[:shots]][None], ex[perm[shots : shots + queries]][None]))
    return out


def gate_recorder(model) -> list[torch.Tensor]:
    """Record the text_transformer's mixture weights (..., experts) at every call of its gate."""
    seen: list[torch.Tensor] = []
    if not hasattr(model, "gate"):
        return seen
    gate = model.gate

    def hook(_module, _inp, out):
        seen.append(torch.softmax(out, -1).detach())

    gate.register_forward_hook(hook)
    return seen


@torch.no_grad()
def measure(path: str, shots: list[int], queries: int, seed: int, train_langs: int) -> dict:
    """The figures of one checkpoint: per task, bits/char per K, cache weight and Transformer-alone bits."""
    ck = load(path)
    model, cfg = ck.model.eval(), ck.config
    data = cfg.data
    groups = {"test": load_split(data.spec, data, "test")}
    train = load_split(data.spec, data, "train")
    groups["train"] = train.seeded_subset(train_langs, seed)
    weights = gate_recorder(model)
    rows = {}
    for split, ts in groups.items():
        for name, sup, qry in episodes(ts, max(shots), queries, seed):
            script = dominant_script(decode_batch(qry[0]))
            chars = float(char_counts(qry).sum())
            row = {"split": split, "script": script}
            for k in shots:
                weights.clear()
                ctx = model.context(sup[:, :k], torch.ones(1, k, dtype=torch.bool))
                nats = model.nll(qry, ctx, chunk=64)
                row[f"K={k}"] = float(nats.sum()) / math.log(2) / chars
                if weights and k == max(shots):
                    valid = (qry != 258).reshape(-1)  # PAD positions are not scored
                    w = torch.cat([x.reshape(-1, x.shape[-1]) for x in weights])[: valid.numel()][valid]
                    row["cache_weight"] = float(1 - w[:, 0].mean())
            rows[name] = row
    return rows


def table(rows: dict, shots: list[int]) -> str:
    """Mean per group: held-out by script (familiar scripts first), then the training languages."""
    by = defaultdict(list)
    for name, r in rows.items():
        by[(r["split"], r["script"])].append(r)
    keys = [f"K={k}" for k in shots] + ["gain", "cache_weight"]
    lines = [f"{'group':<22} {'n':>3} " + " ".join(f"{k:>12}" for k in keys)]
    for (split, script), rs in sorted(by.items(), key=lambda kv: (kv[0][0] != "test", -len(kv[1]))):
        vals = []
        for k in keys:
            if k == "gain":
                xs = [r[f"K={shots[0]}"] - r[f"K={shots[-1]}"] for r in rs]
            else:
                xs = [r[k] for r in rs if k in r]
            vals.append(f"{sum(xs) / len(xs):>12.3f}" if xs else f"{'-':>12}")
        lines.append(f"{split + ' ' + script.lower():<22} {len(rs):>3} " + " ".join(vals))
        lines.append("    " + ", ".join(f"{n} {rows_name(r, shots)}" for n, r in zip([n for n in rows if rows[n] in rs], rs)))
    return "\n".join(lines)


def rows_name(r: dict, shots: list[int]) -> str:
    return "/".join(f"{r[f'K={k}']:.2f}" for k in shots)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--shots", default="0,1,5,10")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--train-languages", type=int, default=6, help="training languages measured beside the held-out ones")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json")
    args = p.parse_args()
    shots = [int(k) for k in args.shots.split(",")]
    out = {}
    for path in args.checkpoints:
        out[path] = measure(path, shots, args.queries, args.seed, args.train_languages)
        print(f"== {path} (bits/char; gain = K={shots[0]} minus K={shots[-1]}; cache_weight at K={shots[-1]})")
        print(table(out[path], shots))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
