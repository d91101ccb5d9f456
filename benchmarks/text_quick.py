"""Quick text meta-generation demo: amortized TextLM on `words`, scored on held-out languages.

Meta-trains the set-conditioned byte-level GRU (context from a support set of 0..K words,
loss on query words of the same language, Adam; half the tasks rewritten in a random new
byte "script" by ``fewgen.tasks.augment.permute_script``) on the meta-train languages, then prints
bits per character of query words of held-out languages given K = 0 (unconditional), 1, 5
and 10 support words from the same language (same queries for every K), with a 95% CI over
episodes, and samples for a few held-out languages.

    PYTHONPATH=src python benchmarks/text_quick.py [--steps 1500] [--threads 2]

Standalone: uses only fewgen.tasks / models / metrics (no training loop of the library).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from fewgen.config import DataConfig
from fewgen.metrics.text import bits_per_char, novelty, validity
from fewgen.tasks.augment import permute_script
from fewgen.tasks.text import load_words
from fewgen.models.bytes import decode_batch
from fewgen.models.text_lm import TextLM


def evaluate(model: TextLM, split, shots: list[int], episodes: int, queries: int, seed: int) -> dict:
    """Bits/char per K over ``episodes`` episodes of every task in the split (same queries for every K)."""
    per_k: dict[int, list[float]] = {k: [] for k in shots}
    per_lang: dict[int, dict[str, list[float]]] = {k: {} for k in shots}
    kmax = max(shots)
    with torch.no_grad():
        for e in range(episodes):
            ep = split.sample_episode(seed, e, len(split), kmax, queries)
            for k in shots:
                mask = torch.arange(kmax)[None, :].expand(ep.num_tasks, kmax) < k
                c = model.context(ep.support, mask)
                bpc = bits_per_char(model.nll(ep.query, c, 1, 256, None), ep.query)  # (T,)
                per_k[k] += bpc.tolist()
                for name, b in zip(ep.names, bpc.tolist()):
                    per_lang[k].setdefault(name, []).append(b)
    out = {}
    for k, v in per_k.items():
        t = torch.tensor(v)
        out[k] = (t.mean().item(), 1.96 * t.std().item() / math.sqrt(len(v)),
                  {n: sum(b) / len(b) for n, b in per_lang[k].items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--tasks", type=int, default=16, help="tasks per meta-batch")
    ap.add_argument("--shots", type=int, default=10, help="max support size during meta-training")
    ap.add_argument("--queries", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-episodes", type=int, default=10)
    ap.add_argument("--augment", type=float, default=0.5, help="share of meta-train tasks put in a new byte script")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    cfg = DataConfig(spec="words")
    tasks = load_words("", cfg)
    splits = tasks.split(cfg.split_fractions, cfg.split_seed)
    train, test = splits["train"], splits["test"]
    print(f"languages: train {len(train)} {train.names}\n           held-out test {len(test)} {test.names}")

    model = TextLM(hidden=args.hidden, context=args.hidden, embed=64, max_len=tasks.meta["max_len"])
    print(f"TextLM {model.config_dict()}: {sum(p.numel() for p in model.parameters()):,} parameters")
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.05)

    t0 = time.time()
    running = None
    aug = torch.Generator().manual_seed(args.seed)
    for step in range(args.steps):
        ep = train.sample_episode(args.seed, step, args.tasks, args.shots, args.queries, min_shots=0)
        ep = permute_script(ep, aug, args.augment)  # new scripts: learn to take letters from the support
        c = model.context(ep.support, ep.support_mask)  # (T, C)
        loss = model.loss(ep.query, c, None).mean()  # nats per word
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 250 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {running:6.2f} nats/word  {time.time() - t0:6.1f}s", flush=True)
    train_s = time.time() - t0
    model.eval()

    shots = [0, 1, 5, 10]
    res = evaluate(model, test, shots, args.eval_episodes, 50, seed=1234)
    print(f"\nheld-out languages, bits/char (per Unicode char, EOS counted), {args.eval_episodes} episodes x "
          f"{len(test)} languages x 50 query words, mean ± 95% CI; trained {args.steps} steps in {train_s:.0f}s")
    print("  K   bits/char")
    for k in shots:
        print(f"{k:3d}   {res[k][0]:.3f} ± {res[k][1]:.3f}")
    print("\nper language:  " + "  ".join(f"K={k:<5d}" for k in shots))
    for name in test.names:
        print(f"  {name:10s}  " + "  ".join(f"{res[k][2][name]:.3f}  " for k in shots))

    train_words = set(w for i in range(len(train)) for w in decode_batch(train.examples(i)))
    g = torch.Generator().manual_seed(0)
    print("\nsamples (K=10 support words -> 10 samples, temperature 1.0)")
    for name in test.names[:3]:
        sub = test.subset([test.index(name)])
        ep = sub.sample_episode(7, 0, 1, 10, 0)
        with torch.no_grad():
            x = model.sample(10, model.context(ep.support, ep.support_mask), g)
        support = decode_batch(ep.support)[0]
        samples = decode_batch(x)[0]
        print(f"  [{name}] support: {' '.join(support)}")
        print(f"  [{name}] samples: {' '.join(samples)}")
        print(f"  [{name}] validity {validity(samples):.2f}, novelty {novelty(samples, support, train_words):.2f}")
    with torch.no_grad():
        x = model.sample(10, model.context(ep.support[:, :0], ep.support_mask[:, :0]), g)
    print(f"  [K=0] samples: {' '.join(decode_batch(x)[0])}")


if __name__ == "__main__":
    main()
