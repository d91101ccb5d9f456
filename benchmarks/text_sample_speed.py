"""Sampling speed of the in-context byte Transformer: 100 strings given 10 support strings.

Times ``TextTransformer.sample`` (the prefix's keys and values computed once, then one byte per
step with a key-value cache, under the UTF-8 grammar) against the same model without the
cache (every step recomputes the whole prefix + string), and the GRU family for reference.
Weights are random unless ``--checkpoint`` gives a trained run (the speed hardly depends on
them: sampling stops when every string has ended, so trained models that end words early
are faster). Prints a table; the target is < 0.5 s on 2 CPU cores.

    PYTHONPATH=src python benchmarks/text_sample_speed.py [--threads 2] [--checkpoint RUN]
"""

from __future__ import annotations

import argparse
import time

import torch

from fewgen.models.bytes import PAD, encode_batch
from fewgen.models.text_lm import TextLM
from fewgen.models.text_transformer import TextTransformer
from fewgen.models.utf8 import advance, draw_token, legal_tokens

SUPPORT = ["maison", "pendant", "toujours", "quelque", "enfant", "heureux", "lumière", "chemin", "oiseau", "soleil"]


def best_of(fn, repeats: int) -> tuple[float, float]:
    """The fastest of ``repeats`` timings of ``fn()`` (after one warm-up): wall-clock seconds and
    CPU seconds of this process (on a shared machine the second is the one that compares)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


@torch.no_grad()
def sample_without_cache(m: TextTransformer, n: int, context: dict, generator: torch.Generator) -> torch.Tensor:
    """The reference: every step scores the strings so far from scratch (prefix included)."""
    T, L = context["prefix"].shape[0], m.max_len
    x = torch.full((T, n, L), PAD, dtype=torch.long)
    fsm = torch.zeros(T * n, dtype=torch.long)
    done = torch.zeros(T * n, dtype=torch.bool)
    for t in range(L):
        logits = m._query_log_probs(x[..., : t + 1], context)[:, :, t].reshape(T * n, -1)
        logits = logits.masked_fill(~legal_tokens(fsm, t, L), float("-inf"))
        tok = torch.where(done, torch.full_like(done, PAD, dtype=torch.long), draw_token(logits, 1.0, 1.0, generator))
        fsm, done = advance(fsm, tok, done)
        x[..., t] = tok.reshape(T, n)
        if bool(done.all()):
            break
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--checkpoint", default="", help="a trained text_transformer run (default: random weights)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.checkpoint:
        from fewgen.checkpoint import load

        m = load(args.checkpoint).model.eval()
    else:
        m = TextTransformer(d_model=128, layers=4, heads=4, max_len=24).eval()
    support = encode_batch(SUPPORT, m.max_len)[None]  # (1, 10, L)
    mask = torch.ones(1, len(SUPPORT), dtype=torch.bool)
    ctx = m.context(support, mask)
    gru = TextLM(hidden=64, context=64, embed=64, max_len=m.max_len).eval()
    gctx = gru.context(support, mask)
    rows = [
        ("text_transformer, KV cache", lambda: m.sample(args.n, ctx, torch.Generator().manual_seed(0), guidance=1.0)),
        ("text_transformer, full recompute", lambda: sample_without_cache(m, args.n, ctx, torch.Generator().manual_seed(0))),
        ("text_lm (GRU, hidden 64)", lambda: gru.sample(args.n, gctx, torch.Generator().manual_seed(0))),
    ]
    params = sum(p.numel() for p in m.parameters())
    print(f"{args.n} strings given {len(SUPPORT)} support words, {args.threads} threads, "
          f"text_transformer {params / 1e6:.2f}M parameters ({m.config_dict()}), best of {args.repeats}")
    print(f"{'sampler':<36} {'wall s':>8} {'CPU s':>8}")
    for name, fn in rows:
        wall, cpu = best_of(fn, args.repeats)
        print(f"{name:<36} {wall:>8.3f} {cpu:>8.3f}")


if __name__ == "__main__":
    main()
