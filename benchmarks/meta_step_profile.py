"""Where one meta-step of ``benchmarks/meta_step_speed.py`` spends its CPU time, per aten op.

A ``TorchDispatchMode`` times every op that reaches the kernels (below vmap and autograd) with
``time.thread_time`` (this thread's CPU seconds), so other load on the machine does not inflate
the figures as it does torch.profiler's wall-clock ones. Run it at one thread. It also counts
denormal floats in each op's outputs (``--denormals``): they make oneDNN's kernels several times slower.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/meta_step_profile.py fewgen-vmap first [--top 25]
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

sys.path.insert(0, str(Path(__file__).resolve().parent))
import meta_step_speed  # noqa: E402


class OpTimer(TorchDispatchMode):
    """CPU nanoseconds per (op, input shapes, input strides) and denormal outputs per op."""

    def __init__(self, denormals: bool) -> None:
        super().__init__()
        self.ns: collections.Counter = collections.Counter()
        self.calls: collections.Counter = collections.Counter()
        self.tiny: collections.Counter = collections.Counter()
        self.denormals = denormals

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.thread_time_ns()
        out = func(*args, **(kwargs or {}))
        ns = time.thread_time_ns() - start
        ts = [a for a in tree_leaves(args) if isinstance(a, torch.Tensor)]
        key = (str(func.overloadpacket), str([(tuple(t.shape), t.stride()) for t in ts])[:140])
        self.ns[key] += ns
        self.calls[key] += 1
        if self.denormals:
            for o in tree_leaves(out):
                if isinstance(o, torch.Tensor) and o.is_floating_point() and o.numel():
                    tiny = int(((o != 0) & (o.abs() < torch.finfo(o.dtype).tiny)).sum())
                    self.tiny[str(func.overloadpacket)] += tiny
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("impl")
    ap.add_argument("order", choices=("first", "second"))
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--denormals", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    step = meta_step_speed.build_step(args.impl, args.order == "first")[0]
    step()
    step()
    timer = OpTimer(args.denormals)
    start = time.thread_time()
    with timer:
        step()
    total = time.thread_time() - start
    by_op: collections.Counter = collections.Counter()
    for (op, _), ns in timer.ns.items():
        by_op[op] += ns
    print(f"{args.impl} {args.order}: one step {total:.3f} CPU s under the timer, {sum(by_op.values()) / 1e9:.3f} s in ops")
    for op, ns in by_op.most_common(12):
        print(f"  {op:36s} {ns / 1e6:8.1f} ms")
    print("by input shapes and strides:")
    for (op, shapes), ns in timer.ns.most_common(args.top):
        print(f"  {op:32s} {ns / 1e6:7.1f} ms  {timer.calls[(op, shapes)]:4d} calls  {shapes}")
    if args.denormals:
        print("denormal outputs:", dict(timer.tiny.most_common(8)))


if __name__ == "__main__":
    main()
