"""Why vectorising MAML over tasks barely paid on CPU: the convolution kernels; and what helps.

Under ``torch.func.vmap`` a convolution whose *weights* differ per task (MAML's adapted
parameters) becomes one grouped convolution (groups = tasks, NCHW). The first table times
forward + backward of the image VAE's costliest layer (33 -> 32 channels, 3x3, 28x28, 15
queries per task, 16 tasks) and of its 32 -> 1 output layer, six ways:

- ``vmap``            what vmap runs: a grouped NCHW convolution
- ``loop``            one ordinary convolution per task (what learn2learn / higher run)
- ``vmap, NHWC``      vmap with channels-last (NHWC) physical layouts of input and weights
- ``one weight``      every task's images through one shared weight (no per-task weights)
- ``vmap, im2col``    the convolution lowered to a matrix product under vmap: ``F.unfold``
                      (im2col) and one ``torch.bmm`` over the tasks ((T, out, in*9) @
                      (T, in*9, images*pixels))
- ``vmap, task_conv`` :func:`fewgen.models.task_conv.task_conv2d` under vmap: its vmap rule
                      runs one ordinary convolution per task

The second table (``--per-layer``) times what second-order MAML does with each of the VAE's
convolutions (8 tasks x 20 images, one inner step under ``vmap(grad)``, the query loss, the
meta-gradient; CPU ms, median of 4), torch's grouped convolution vs task_conv: the evidence
for which layers :mod:`fewgen.models.nn` and the VAE make task convolutions.

    PYTHONPATH=src python benchmarks/grouped_conv.py [--threads 2] [--per-layer]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import grad, vmap

from fewgen.models.task_conv import task_conv2d, task_conv_transpose2d

# name, transposed, in, out, kernel, stride, size: the default image VAE's convolutions
VAE_LAYERS = (("trunk 1 -> 32, 4x4 /2, 28x28", False, 1, 32, 4, 2, 28),
              ("trunk 32 -> 64, 4x4 /2, 14x14", False, 32, 64, 4, 2, 14),
              ("up1 65 -> 32, transposed 4x4 x2, 7x7", True, 65, 32, 4, 2, 7),
              ("up2 33 -> 32, transposed 4x4 x2, 14x14", True, 33, 32, 4, 2, 14),
              ("out 33 -> 32, 3x3, 28x28", False, 33, 32, 3, 1, 28),
              ("out 32 -> 1, 3x3, 28x28", False, 32, 1, 3, 1, 28),
              ("template 1 -> 1, 5x5, 28x28", False, 1, 1, 5, 1, 28))


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


def cpu_ms(fn, repeats: int = 4) -> float:
    """Median CPU milliseconds per call (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times) * 1e3


def maml_layer(conv, w: Tensor, x: Tensor):
    """One second-order MAML meta-gradient through a single layer ``conv(x, w)``, vmapped over
    the tasks of x (T, N, ...): an inner SGD step on a toy loss, the loss again, d/dw."""
    def loss(wt: Tensor, xt: Tensor) -> Tensor:
        return torch.tanh(conv(xt, wt)).pow(2).mean()

    def task(wt: Tensor, xt: Tensor) -> Tensor:
        return loss(wt - 0.1 * grad(loss)(wt, xt), xt)

    return lambda: torch.autograd.grad(vmap(task, in_dims=(None, 0))(w, x).sum(), w)


def per_layer(tasks: int = 8, images: int = 20) -> None:
    """The second table: second-order MAML per VAE layer, grouped vs task_conv."""
    print(f"\nsecond-order MAML through one layer, CPU ms ({tasks} tasks x {images} images)\n")
    print("| layer | vmap (grouped) | vmap, task_conv | speed-up |")
    print("|---|---|---|---|")
    for name, transposed, cin, cout, k, stride, size in VAE_LAYERS:
        pad = 1 if stride == 2 else (k - 1) // 2
        x = torch.randn(tasks, images, cin, size, size)
        w = torch.randn(*((cin, cout) if transposed else (cout, cin)), k, k, requires_grad=True)
        if transposed:
            ref = maml_layer(lambda a, b: F.conv_transpose2d(a, b, None, stride, pad), w, x)
            new = maml_layer(lambda a, b: task_conv_transpose2d(a, b, None, (stride,) * 2, (pad,) * 2, (0, 0),
                                                                (1, 1)), w, x)
        else:
            ref = maml_layer(lambda a, b: F.conv2d(a, b, None, stride, pad), w, x)
            new = maml_layer(lambda a, b: task_conv2d(a, b, None, (stride,) * 2, (pad,) * 2), w, x)
        a, b = cpu_ms(ref), cpu_ms(new)
        print(f"| {name} | {a:.0f} | {b:.0f} | {a / b:.2f}x |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--per-layer", action="store_true", help="also the second table (second-order MAML per layer)")
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
    if args.per_layer:
        per_layer()


if __name__ == "__main__":
    main()
