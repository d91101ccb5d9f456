"""fewgen.models.task_conv: the per-task convolutions equal F.conv2d / F.conv_transpose2d in
values and in first-, second- and third-order gradients, vmapped over tasks (per-task and
shared weights) and not, and load nn.Conv2d / nn.ConvTranspose2d state dicts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import grad, vmap

from fewgen.models.task_conv import TaskConv2d, TaskConvTranspose2d, task_conv2d, task_conv_transpose2d

T, N = 3, 2


def ref_conv(x, w, b, stride, padding, dilation):
    return F.conv2d(x, w, b, stride, padding, dilation)


def ref_tconv(x, w, b, stride, padding, output_padding, dilation):
    return F.conv_transpose2d(x, w, b, stride, padding, output_padding, 1, dilation)


def net(conv, tconv, output_padding=(1, 0)):
    """A small conv -> transposed conv -> conv net of parameters p and images x (N, 2, 8, 8)."""
    def f(p, x):
        h = torch.tanh(conv(x, p["w1"], p["b1"], (2, 2), (1, 1), (1, 1)))  # -> (N, 5, 4, 4)
        h = torch.tanh(tconv(h, p["w2"], p["b2"], (2, 2), (1, 1), output_padding, (1, 1)))  # -> (N, 3, 8 or 9, 8)
        return conv(h, p["w3"], None, (1, 1), (2, 1), (2, 1))
    return f


def maml_task(f):
    """One task's query loss after one inner SGD step on its support (torch.func.grad inside)."""
    def task(p, xs, xq):
        g = grad(lambda q: f(q, xs).pow(2).mean())(p)
        return f({k: p[k] - 0.1 * g[k] for k in p}, xq).pow(2).mean()
    return task


def params():
    g = torch.Generator().manual_seed(0)
    shapes = {"w1": (5, 2, 4, 4), "b1": (5,), "w2": (5, 3, 4, 4), "b2": (3,), "w3": (2, 3, 3, 3)}
    return {k: torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True) for k, s in shapes.items()}


def images(seed):
    return torch.randn(T, N, 2, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def grads_to_third_order(task, p, xs, xq):
    """The meta-loss, its gradient and the gradient of the gradient's squared norm."""
    loss = vmap(task, in_dims=(None, 0, 0))(p, xs, xq).mean()
    g1 = torch.autograd.grad(loss, list(p.values()), create_graph=True)
    g2 = torch.autograd.grad(sum((g * g).sum() for g in g1), list(p.values()))
    return [loss, *g1, *g2]


def test_maml_meta_gradient_and_its_derivative_equal_the_ordinary_kernels():
    p, xs, xq = params(), images(1), images(2)
    # No output padding: torch 2.13's own conv_transpose2d fails at third order under vmap with it
    # ("output_padding is not supported for non-transposed convolutions"); ours does not.
    want = grads_to_third_order(maml_task(net(ref_conv, ref_tconv, (0, 0))), p, xs, xq)
    got = grads_to_third_order(maml_task(net(task_conv2d, task_conv_transpose2d, (0, 0))), p, xs, xq)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert want[2].abs().sum() > 0 and want[-1].abs().sum() > 0  # the comparison is not of zeros


@pytest.mark.parametrize("shared", [False, True])
def test_vmapped_values_and_gradients_with_per_task_or_shared_weights(shared):
    p = params()
    ws = {k: v.detach()[None].repeat(T, *[1] * v.dim()) * (1 + 0.1 * torch.arange(T, dtype=v.dtype).reshape(
        -1, *[1] * v.dim())) for k, v in p.items()}
    ws = {k: (p[k] if shared else v.requires_grad_()) for k, v in ws.items()}
    in_dims = ({k: None for k in ws} if shared else 0, 0)
    x = images(3).requires_grad_()
    outs = {}
    for name, f in (("ref", net(ref_conv, ref_tconv)), ("task", net(task_conv2d, task_conv_transpose2d))):
        y = vmap(f, in_dims=in_dims)(ws, x)
        outs[name] = [y, *torch.autograd.grad(y.pow(2).sum(), [x, *ws.values()])]
    for a, b in zip(outs["task"], outs["ref"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_modules_are_the_torch_modules_outside_transforms_and_load_their_state_dicts():
    torch.manual_seed(0)
    for ours, theirs, x in ((TaskConv2d(3, 4, 3, 2, 1), nn.Conv2d(3, 4, 3, 2, 1), torch.randn(2, 3, 9, 9)),
                            (TaskConvTranspose2d(3, 4, 4, 2, 1, output_padding=1),
                             nn.ConvTranspose2d(3, 4, 4, 2, 1, output_padding=1), torch.randn(2, 3, 5, 5))):
        ours.load_state_dict(theirs.state_dict())
        assert isinstance(ours, type(theirs))  # fewgen.meta.inner.adapted_layers still finds them
        torch.testing.assert_close(ours(x), theirs(x))
        w = torch.stack([theirs.weight.detach() * (t + 1) for t in range(T)])
        fn = lambda m: lambda wt, xt: torch.func.functional_call(m, {"weight": wt, "bias": m.bias}, (xt,))  # noqa: E731
        xs = x[None].repeat(T, 1, 1, 1, 1)
        torch.testing.assert_close(vmap(fn(ours))(w, xs), vmap(fn(theirs))(w, xs))


def test_unsupported_configurations_are_refused():
    with pytest.raises(ValueError, match="groups=1"):
        TaskConv2d(4, 4, 3, groups=2)
    with pytest.raises(ValueError, match="groups=1"):
        TaskConv2d(4, 4, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="groups=1"):
        TaskConvTranspose2d(4, 4, 3, groups=2)
