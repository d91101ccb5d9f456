"""Convolutions with per-task weights that stay fast under ``torch.func.vmap``.

Under ``vmap`` over tasks (MAML's adapted parameters, :mod:`fewgen.meta.inner`) a convolution
whose weights are batched becomes one *grouped* convolution (groups = tasks), which oneDNN runs
about 2x slower per FLOP on CPU than one ordinary convolution per task
(``benchmarks/grouped_conv.py``). Here a 2-d convolution is an :class:`torch.autograd.Function`
with its own vmap rule: batched weights run one ordinary convolution per task, a weight shared
by the tasks folds the task axis into the batch. Everything else in the model stays vectorised.

Three bilinear maps close under differentiation, so the function is differentiable to any
order (second-order MAML) with only these three kernels:

- ``conv``  ``y = conv(x, w)``;
- ``dx``    ``dx = conv_input_grad(gy, w)`` (a transposed convolution);
- ``dw``    ``dw = conv_weight_grad(x, gy)``.

The derivative of each is made of the other two (see ``_Conv2d.backward``). A transposed
convolution is ``dx`` of the convolution it transposes. :class:`TaskConv2d` and
:class:`TaskConvTranspose2d` are ``nn.Conv2d`` / ``nn.ConvTranspose2d`` with that forward (same
parameters, names and values: checkpoints load either way); outside any torch.func transform
(and under ``torch.compile``) they call the ordinary kernels.

Measured (torch 2.13, CPU, ``benchmarks/grouped_conv.py``): forward + backward of the VAE's
33 -> 32 3x3 layer under vmap runs as fast as a loop over tasks (~2x the grouped convolution);
second-order MAML through it 1.5-1.8x, through its 32 -> 1 output layer 2.5-3.6x, through the
stride-2 and transposed layers 1.0-1.3x. The price is Python: functorch handles an
autograd.Function at every transform level in Python (about a millisecond a call), so small
layers, and small task chunks, gain less or lose. Lowering the convolution to im2col + a
batched matrix product (``F.unfold`` + ``bmm``) instead was 3-7x *slower* than the grouped
convolution: unfold is slow and the im2col copy (9x the input) costs more than oneDNN's direct
convolution, which already runs near the machine's matmul peak.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch._C._functorch import is_functorch_wrapped_tensor

CONV, DX, DW = 0, 1, 2  # which of the three bilinear maps (module docstring)


@dataclass(frozen=True)
class Spec:
    """A convolution's geometry: stride, padding, dilation, and the input image's (C, H, W) and
    the weight's shape (what ``dx`` / ``dw`` cannot infer from their arguments). A plain class,
    not a tuple: functorch flattens the arguments of every call, and this stays one leaf."""

    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    x_shape: tuple[int, int, int]
    w_shape: tuple[int, int, int, int]


def _kernel(kind: int, a: Tensor, b: Tensor, s: Spec) -> Tensor:
    """One of the three maps on ordinary (unbatched) tensors: a batch of images (N, ...)."""
    if kind == CONV:  # a = x, b = w
        return F.conv2d(a, b, None, s.stride, s.padding, s.dilation)
    if kind == DX:  # a = gy, b = w
        x = a.new_empty(1).expand(a.shape[0], *s.x_shape)
        return torch.ops.aten.convolution_backward(a, x, b, None, s.stride, s.padding, s.dilation, False, [0, 0], 1,
                                                   (True, False, False))[0]
    w = a.new_empty(1).expand(s.w_shape)  # DW: a = x, b = gy
    return torch.ops.aten.convolution_backward(b, a, w, None, s.stride, s.padding, s.dilation, False, [0, 0], 1,
                                               (False, True, False))[1]


class _Conv2d(torch.autograd.Function):
    """``_kernel(kind, a, b, spec)`` as a differentiable, vmappable function. ``looped``: a and b
    carry a leading task axis, and the map runs once per task (what the vmap rule calls: one
    function call for all tasks, so its Python overhead is paid once, not per task)."""

    @staticmethod
    def forward(a: Tensor, b: Tensor, kind: int, spec: Spec, looped: bool) -> Tensor:
        if not looped:
            return _kernel(kind, a, b, spec)
        return torch.stack([_kernel(kind, x, y, spec) for x, y in zip(a.unbind(0), b.unbind(0))])

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        a, b, ctx.kind, ctx.spec, ctx.looped = inputs
        ctx.save_for_backward(a, b)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None]:
        a, b = ctx.saved_tensors
        kind, s, lp = ctx.kind, ctx.spec, ctx.looped
        need_a, need_b = ctx.needs_input_grad[:2]
        if kind == CONV:  # y = conv(x, w): dx = DX(g, w), dw = DW(x, g)
            ga = _Conv2d.apply(g, b, DX, s, lp) if need_a else None
            gb = _Conv2d.apply(a, g, DW, s, lp) if need_b else None
        elif kind == DX:  # dx = DX(gy, w), g x-shaped: d gy = conv(g, w), d w = DW(g, gy)
            ga = _Conv2d.apply(g, b, CONV, s, lp) if need_a else None
            gb = _Conv2d.apply(g, a, DW, s, lp) if need_b else None
        else:  # dw = DW(x, gy), g w-shaped: d x = DX(gy, g), d gy = conv(x, g)
            ga = _Conv2d.apply(b, g, DX, s, lp) if need_a else None
            gb = _Conv2d.apply(a, g, CONV, s, lp) if need_b else None
        return ga, gb, None, None, None

    @staticmethod
    def vmap(info: Any, in_dims: tuple, a: Tensor, b: Tensor, kind: int, spec: Spec, looped: bool
             ) -> tuple[Tensor, int]:
        da, db = in_dims[:2]
        n = info.batch_size
        a = a.movedim(da, 0) if da is not None else a.expand(n, *a.shape)
        if db is None and kind != DW and not looped:  # a weight shared by the tasks: they are more images
            out = _Conv2d.apply(a.reshape(-1, *a.shape[2:]), b, kind, spec, False)
            return out.reshape(n, a.shape[1], *out.shape[1:]), 0
        b = b.movedim(db, 0) if db is not None else b.expand(n, *b.shape)
        if not looped:  # per-task weights: one ordinary convolution per task
            return _Conv2d.apply(a, b, kind, spec, True), 0
        # a vmap around an already looped call (nested vmap): its tasks are more tasks
        out = _Conv2d.apply(a.flatten(0, 1), b.flatten(0, 1), kind, spec, True)
        return out.unflatten(0, (n, a.shape[1])), 0


def conv_map(kind: int, a: Tensor, b: Tensor, spec: Spec) -> Tensor:
    """One of the three maps (``CONV``, ``DX``, ``DW``), differentiable and vmappable."""
    return _Conv2d.apply(a, b, kind, spec, False)


def _transformed(*ts: Tensor | None) -> bool:
    """Whether any tensor is inside a torch.func transform (vmap, grad), outside ``torch.compile``
    (which fails to lower the function: inductor's dynamic shapes, torch 2.13; it gets torch's
    own convolutions)."""
    if torch.compiler.is_compiling():
        return False
    return any(t is not None and is_functorch_wrapped_tensor(t) for t in ts)


def task_conv2d(x: Tensor, w: Tensor, bias: Tensor | None = None, stride: tuple[int, int] = (1, 1),
                padding: tuple[int, int] = (0, 0), dilation: tuple[int, int] = (1, 1)) -> Tensor:
    """``F.conv2d(x, w, bias, stride, padding, dilation)`` for x (N, C, H, W), groups 1, zero padding."""
    if not _transformed(x, w, bias):
        return F.conv2d(x, w, bias, stride, padding, dilation)
    y = conv_map(CONV, x, w, Spec(stride, padding, dilation, tuple(x.shape[1:]), tuple(w.shape)))
    return y if bias is None else y + bias[:, None, None]


def task_conv_transpose2d(x: Tensor, w: Tensor, bias: Tensor | None, stride: tuple[int, int],
                          padding: tuple[int, int], output_padding: tuple[int, int],
                          dilation: tuple[int, int]) -> Tensor:
    """``F.conv_transpose2d`` for x (N, C_in, H, W) and w (C_in, C_out, kh, kw), groups 1."""
    if not _transformed(x, w, bias):
        return F.conv_transpose2d(x, w, bias, stride, padding, output_padding, 1, dilation)
    size = [(n - 1) * st - 2 * p + d * (k - 1) + op + 1
            for n, st, p, d, k, op in zip(x.shape[2:], stride, padding, dilation, w.shape[2:], output_padding)]
    y = conv_map(DX, x, w, Spec(stride, padding, dilation, (w.shape[1], *size), tuple(w.shape)))
    return y if bias is None else y + bias[:, None, None]


class TaskConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose forward is :func:`task_conv2d` (groups 1, zero padding only)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.groups != 1 or self.padding_mode != "zeros" or isinstance(self.padding, str):
            raise ValueError("TaskConv2d supports groups=1, numeric zero padding only")

    def forward(self, x: Tensor) -> Tensor:
        return task_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)


class TaskConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` whose forward is :func:`task_conv_transpose2d` (groups 1, no ``output_size``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.groups != 1 or self.padding_mode != "zeros":
            raise ValueError("TaskConvTranspose2d supports groups=1, zero padding only")

    def forward(self, x: Tensor) -> Tensor:
        return task_conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                     self.dilation)
