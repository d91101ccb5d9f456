"""The diffusion sampler: classifier-free guidance and DDIM / DDPM steps down a v-prediction schedule.

Like a diffusers scheduler it is kept apart from the network: it knows the noise schedule
(``alpha_t``, ``sigma_t`` with ``z_t = alpha_t x + sigma_t eps``) and the v parameterisation
(``v = alpha_t eps - sigma_t x``), and calls the denoiser it is given;
:class:`fewgen.models.image_diffusion.ImageDiffusion` owns the denoiser and the schedule.

- :func:`guided_v`: classifier-free guidance (Ho & Salimans 2022), ``v = v_uncond + w (v_cond - v_uncond)``
  from one batched pass over a conditional and an unconditional copy of the images.
- :func:`ddim_loop`: DDIM (Song et al. 2021) on equal steps of t; ``eta`` 0 is deterministic,
  1 is ancestral sampling from the posterior (``ddpm``, :data:`SAMPLERS`).

Shapes: T tasks, n samples per task, images (C, S, S).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..errors import FewgenError
from ..noise import task_randn

SAMPLERS = {"ddim": 0.0, "ddpm": 1.0}  # eval.sampler -> DDIM's eta
Context = dict[str, Tensor]
Schedule = Callable[[Tensor], tuple[Tensor, Tensor]]  # t -> (alpha_t, sigma_t)
# The denoiser: z (B, C, S, S), t (B,), the context, keep (B,) bool or None (False: no support) -> v_hat (B, C, S, S)
Denoiser = Callable[[Tensor, Tensor, Context, Tensor | None], Tensor]


def guided_v(denoiser: Denoiser, z: Tensor, t: Tensor, context: Context, guidance: float) -> Tensor:
    """Classifier-free guided v for z (T, n, C, S, S) at one time t (scalar tensor): one batched
    pass of ``denoiser`` over the conditional and the unconditional copies (only one when the
    guidance is 0, the unconditional model, or 1, the conditional one)."""
    T, n = z.shape[:2]
    if guidance in (0.0, 1.0):
        keep = torch.full((T * n,), guidance == 1.0, dtype=torch.bool, device=z.device)
        return denoiser(z.flatten(0, 1), t.expand(T * n), context, keep).reshape(z.shape)
    both = torch.cat([z, z], 1).flatten(0, 1)  # (T*2n, ...): per task n conditional, then n unconditional
    keep = torch.arange(2 * n, device=z.device).repeat(T) < n
    if "pick" in context:  # the same template shot for both copies
        context = {**context, "pick": context["pick"].repeat(1, 2)}
    v = denoiser(both, t.expand(2 * T * n), context, keep).reshape(T, 2, n, *z.shape[2:])
    return v[:, 1] + guidance * (v[:, 0] - v[:, 1])


def ddim_loop(schedule: Schedule, z: Tensor, predict_v: Callable[[Tensor, Tensor], Tensor], steps: int, eta: float,
              generator: torch.Generator | None, start: float = 1.0) -> Tensor:
    """DDIM from z_start (T, n, C, S, S) down t = start -> 0 in ``steps`` equal steps of the
    ``schedule``, ``predict_v(z_t, t)`` giving v; ``eta`` 0 is deterministic, 1 ancestral (noise
    from ``generator``). Returns the last step's prediction of the image, x_hat in [-1, 1]."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    ts = torch.linspace(start, 0.0, steps + 1, device=z.device)
    x_hat = z
    for i in range(steps):
        a_t, s_t = schedule(ts[i])
        v = predict_v(z, ts[i])
        if not torch.isfinite(v).all():
            raise FewgenError(f"diffusion sampling produced NaN/inf at step {i + 1} of {steps} "
                              "(a diverged checkpoint, or eval.guidance too large)")
        x_hat = (a_t * z - s_t * v).clamp(-1, 1)
        if i == steps - 1:
            break
        eps_hat = (z - a_t * x_hat) / s_t
        a_s, s_s = schedule(ts[i + 1])
        c = eta * (s_s**2 / s_t**2 * (1 - a_t**2 / a_s**2)).clamp_min(0).sqrt()  # DDIM's sigma_t(eta)
        z = a_s * x_hat + (s_s**2 - c**2).clamp_min(0).sqrt() * eps_hat
        if eta > 0:
            z = z + c * task_randn(z.shape, generator, z.device)
    return x_hat
