"""A character trigram with a support cache: the classical reference for few-shot words.

The reference model of ``../shared/MEASUREMENTS.md`` and of the issue "Learn to learn, not to
recognise", rebuilt here so that its figure can be set beside fewgen's on the same held-out
tasks and supports: an interpolated Witten-Bell trigram over *characters* (not bytes), fit on
the meta-train strings, mixed ``(1 - w)`` / ``w`` with a Witten-Bell trigram fit on the K support
strings alone (``w = 0.3`` as in the reference; ``--weights`` tries others, e.g. to choose it on
meta-val with ``--split val``). Bits per character with the end of a string counted as one
character, as fewgen counts; the same seeded supports and queries as
``benchmarks/text_support_use.py``. It checks that ``text_ngram`` (a *byte* n-gram), the
baseline row of ``fewgen eval``, is not a weaker straw man than this one.

    python benchmarks/char_trigram.py --data words --shots 0,1,5,10 --queries 200
"""

from __future__ import annotations

import argparse
import math
from collections import Counter, defaultdict

import torch

from fewgen.config import DataConfig
from fewgen.metrics.text_fidelity import dominant_script
from fewgen.models.bytes import decode_batch
from fewgen.tasks.base import episode_generator
from fewgen.tasks.spec import load_split

END = "\0"  # the end of a string, one more character


class WittenBell:
    """Interpolated Witten-Bell character n-gram of ``order`` over strings (BOS-padded)."""

    def __init__(self, strings: list[str], order: int = 3) -> None:
        self.order = order
        self.counts: list[dict[str, Counter]] = [defaultdict(Counter) for _ in range(order)]
        for s in strings:
            chars = ["\1"] * (order - 1) + list(s) + [END]
            for i in range(order - 1, len(chars)):
                for n in range(order):  # history of n characters
                    self.counts[n][tuple(chars[i - n : i])][chars[i]] += 1

    def prob(self, history: tuple[str, ...], c: str, vocab: int) -> float:
        p = 1.0 / vocab
        for n in range(self.order):
            h = history[len(history) - n :] if n else ()
            table = self.counts[n].get(h)
            if table:
                total, types = sum(table.values()), len(table)
                p = (table[c] + types * p) / (total + types)
        return p


def bits(bg: WittenBell, sup: WittenBell | None, w: float, queries: list[str], vocab: int) -> float:
    """Bits per character of ``queries`` under ``(1 - w) bg + w sup`` (bg alone without a support)."""
    total, chars = 0.0, 0
    for s in queries:
        seq = ["\1"] * (bg.order - 1) + list(s) + [END]
        for i in range(bg.order - 1, len(seq)):
            h = tuple(seq[i - bg.order + 1 : i])
            p = bg.prob(h, seq[i], vocab)
            if sup is not None:
                p = (1 - w) * p + w * sup.prob(h, seq[i], vocab)
            total -= math.log2(p)
            chars += 1
    return total / chars


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="words")
    p.add_argument("--split", default="test")
    p.add_argument("--shots", default="0,1,5,10")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--weights", default="0.3", help="support weights w to report, comma-separated")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    cfg = DataConfig(spec=args.data)
    train = load_split(args.data, cfg, "train")
    bg = WittenBell([s for i in range(len(train)) for s in decode_batch(train.examples(i))])
    held = load_split(args.data, cfg, args.split)
    shots = [int(k) for k in args.shots.split(",")]
    alphabet = {c for table in bg.counts[0].values() for c in table}
    for w in [float(x) for x in args.weights.split(",")]:
        by_script: dict[str, list[list[float]]] = defaultdict(list)
        for i, name in enumerate(held.names):
            ex = held.examples(i)
            perm = torch.randperm(len(ex), generator=episode_generator(args.seed, i))
            words = decode_batch(ex[perm])
            support, queries = words[: max(shots)], words[max(shots) : max(shots) + args.queries]
            vocab = len(alphabet | {c for s in words for c in s}) + 1
            row = [bits(bg, WittenBell(support[:k]) if k else None, w, queries, vocab) for k in shots]
            by_script[dominant_script(queries)].append(row)
            print(f"w={w} {name:>4} " + " ".join(f"K={k} {b:.3f}" for k, b in zip(shots, row)))
        for script, rows in sorted(by_script.items(), key=lambda kv: -len(kv[1])):
            mean = [sum(r[j] for r in rows) / len(rows) for j in range(len(shots))]
            print(f"w={w} {script.lower():<10} ({len(rows)} tasks) " + " ".join(f"K={k} {b:.3f}" for k, b in zip(shots, mean)))


if __name__ == "__main__":
    main()
