"""Why vectorising MAML over tasks barely pays on CPU: the convolution kernels.

Under ``torch.func.vmap`` a convolution whose *weights* differ per task (MAML's adapted
parameters) becomes one grouped convolution (groups = tasks, NCHW). This times forward +
backward of the image VAE's costliest layer (33 -> 32 channels, 3x3, 28x28, 15 queries per
task, 16 tasks) and of its 32 -> 1 output layer, four ways:

- ``vmap``            what vmap runs: a grouped NCHW convolution
- ``loop``            one ordinary convolution per task (what learn2learn / higher run)
- ``vmap, NHWC``      vmap with channels-last (NHWC) physical layouts of input and weights
- ``one weight``      every task's images through one shared weight (no per-task weights)

    PYTHONPATH=src python benchmarks/grouped_conv.py [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import vmap

from fewgen.models.task_conv import task_conv2d


def timed(fn, repeats: int = 5) -> float:
    """Milliseconds per call (after one warm-up call)."""
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats * 1e3


def im2col_conv(x: Tensor, w: Tensor) -> Tensor:
    """``F.conv2d(x, w, padding=1)`` (3x3) for x (N, C, H, W) as im2col + one matrix product:
    under vmap over tasks, one ``bmm`` of (T, O, C*9) by (T, C*9, N*H*W)."""
    n, _, h, wd = x.shape
    cols = F.unfold(x, w.shape[-2:], padding=1)  # (N, C*9, H*W)
    out = w.reshape(w.shape[0], -1) @ cols.transpose(0, 1).reshape(cols.shape[1], -1)  # (O, N*H*W)
    return out.reshape(w.shape[0], n, h, wd).transpose(0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tasks, queries, size = 16, 15, 28
    print(f"forward + backward, ms ({tasks} tasks x {queries} images, {size}x{size}, {args.threads} threads)\n")
    print("| layer | vmap (grouped NCHW) | loop over tasks | vmap, NHWC layouts | one shared weight "
          "| vmap, im2col + bmm | vmap, task_conv |")
    print("|---|---|---|---|---|---|---|")
    for cin, cout in ((33, 32), (32, 1)):
        x = torch.randn(tasks, queries, cin, size, size)
        w = torch.randn(tasks, cout, cin, 3, 3, requires_grad=True)
        # The same values laid out (N, H, W, T, C) / (T, O, kh, kw, I): vmap's reshapes become views
        x_cl = x.permute(1, 3, 4, 0, 2).contiguous().permute(3, 0, 4, 1, 2)
        w_cl = w.detach().permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3).requires_grad_()
        shared_x = x.reshape(tasks * queries, cin, size, size)
        shared_w = torch.randn(cout, cin, 3, 3, requires_grad=True)

        def conv(a, b):
            return F.conv2d(a, b, padding=1)

        def loop():
            for t in range(tasks):
                conv(x[t], w[t]).sum().backward()

        row = [timed(lambda: vmap(conv)(x, w).sum().backward()), timed(loop),
               timed(lambda: vmap(conv)(x_cl, w_cl).sum().backward()),
               timed(lambda: conv(shared_x, shared_w).sum().backward()),
               timed(lambda: vmap(im2col_conv)(x, w).sum().backward()),
               timed(lambda: vmap(lambda a, b: task_conv2d(a, b, padding=(1, 1)))(x, w).sum().backward())]
        print(f"| {cin} -> {cout}, 3x3 | " + " | ".join(f"{v:.0f}" for v in row) + " |")


if __name__ == "__main__":
    main()
