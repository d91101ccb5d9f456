"""A set-conditioned diffusion model for images: a small U-Net that attends to the support.

Few-Shot Diffusion Models (Giannone, Nielsen & Winther 2022): a denoising diffusion model
whose denoiser reads the K-shot support set. Here the support becomes tokens (each shot's patch
tokens from a shared conv encoder, plus a pooled set token; :mod:`fewgen.models.attention`) and
the U-Net's feature maps attend to them with cross-attention in the middle (S/4) and on the way
up (S/2); not on the way down, which would cost 40% more sampling time on a CPU.

**Objective: v-prediction on a cosine schedule** (Salimans & Ho 2022, "Progressive distillation").
The noised image is ``z_t = alpha_t x + sigma_t eps`` with ``alpha_t = cos u``, ``sigma_t = sin u``,
``u`` linear in ``t`` (the cosine schedule of Nichol & Dhariwal 2021, its log-SNR clipped to
[-12, 12]); the network predicts ``v = alpha_t eps - sigma_t x``. Why v and not eps or a flow: the
prediction stays well scaled at both ends of the schedule (``x_hat = alpha z - sigma v_hat``
never divides by a vanishing alpha, unlike eps-prediction near t = 1), which is what makes a
sampler of few steps (``eval.sample_steps``, 10 by default) work; and a Gaussian diffusion keeps the
variational bound of VDM (Kingma et al. 2021) for ``nll``, which rectified flow would only give
through an ODE trace estimate. Images are mapped from [0, 1] to [-1, 1].

``loss`` is the training objective, ``0.5 ||v - v_hat||^2`` summed over pixels at one uniform
``t`` per example: a weighted form of the bound (Kingma & Gao 2023), **not** a bound in nats
itself; ``nll`` computes the bound.

**Classifier-free guidance over the support** (Ho & Salimans 2022): in training each example's
support is dropped with probability ``p_uncond`` (it then attends to the null token alone, as
an empty support does), so one model is both the conditional and the unconditional (K = 0)
generator. Sampling mixes them, ``v = v_uncond + w (v_cond - v_uncond)``: ``w = 0`` is the
unconditional model, 1 the conditional one, above 1 trades diversity for fidelity.

**Samplers** (:mod:`fewgen.models.diffusion_sampler`): deterministic DDIM (Song et al. 2021) on
``steps`` equal steps of t, or ``ddpm`` (DDIM with eta = 1: ancestral sampling from the posterior). The output is the last step's
prediction of the image mapped back to [0, 1]; for binary data (Omniglot) that is
``P(ink | z_t)`` at the last step, the same kind of value as the VAE's decoder mean, so grids,
FID and fidelity read it unchanged. Samples are not binarised (threshold at 0.5 to get strokes).

**Likelihood**: ``nll`` is VDM's continuous-time variational bound on ``-log p(x | support)``
in nats: the prior term ``KL(q(z_1 | x) || N(0, I))``, the diffusion term
``E_t[-0.5 lambda'(t) alpha_t^2 ||v - v_hat||^2]`` (``lambda`` = log-SNR) and a discretised
Bernoulli decoder at t = 0, ``p(x_i = 1 | z_0) = sigmoid(2 alpha_0 z_0 / sigma_0^2)`` (VDM's
decoder for the two values -1, 1; ``model.extra.pixels = "binary"``) or, for 8-bit data
(``"8bit"``, colour by default), VDM's categorical decoder over the 256 levels
(:mod:`fewgen.models.pixels`). The expectations over ``t`` and the noise are estimated
with ``num_samples`` stratified draws per example, ``chunk`` at a time: an unbiased estimate
of the bound, not an importance-weighted one. Soft (non-binary) pixels give the same
cross-entropy convention as the VAE's Bernoulli decoder. It scores the conditional model
(guidance 1): a guided mixture has no tractable likelihood.

Context (contract v2): ``{"tokens": (T, L, D), "mask": (T, L) bool, "mean": (T, C, S, S),
"shots": (T, K, C, S, S), "shot_present": (T, K) bool}`` with ``L = 1 + K*(S/4)^2``; ``mean`` is
the support's mean image, which (with ``template``, the default) also enters the U-Net as input
channels; ``shots`` are the shots in a canonical order (present first; zeros where absent), the
templates of ``template="shot"`` and the starting points of ``strength`` < 1.

Shapes: T tasks, K shots, N examples, B = T*N images (task-major), images (C, S, S), S divisible
by 4. The U-Net runs at S/2 (after a 2x2 pixel unshuffle) and S/4.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import EvalConfig, ModelConfig
from ..errors import ConfigError
from ..noise import task_randn
from .attention import CrossAttention, SupportEncoder
from .base import GenerativeModel, check_heads, parse_extra
from .diffusion_sampler import SAMPLERS, ddim_loop, guided_v
from .nn import canonical_order, masked_mean, mlp
from .pixels import LEVELS, categorical_decoder_nll, levels, resolve_pixels, stored_pixels

LOGSNR_MIN, LOGSNR_MAX = -12.0, 12.0
TEMPLATES = (True, False, "mean", "shot")  # model.extra.template: True is "mean"
Context = dict[str, Tensor]


@dataclass(frozen=True)
class ImageDiffusionExtra:
    """The ``model.extra`` keys of ``image_diffusion`` (constructor arguments of the same names)."""

    heads: int = 4  # cross-attention heads: a positive divisor of model.hidden
    p_uncond: float = 0.2  # probability of dropping an example's support in training (guidance), in [0, 1)
    template: bool | str = True  # the U-Net's template input: true / "mean" (the mean shot), "shot" (one shot per sample), false
    pixels: str = "auto"  # the bound's decoder at t = 0: binary (Bernoulli) | 8bit (256 levels) | auto (by channels)

    def validate(self, hidden: int) -> None:
        """One-line ConfigErrors naming the key of a value out of range."""
        resolve_pixels(self.pixels, 1)
        if self.template not in TEMPLATES:
            raise ConfigError(f"model.extra.template must be true (the mean shot), \"shot\" (one shot per sample) "
                              f"or false, got {self.template!r}")
        if not 0 <= self.p_uncond < 1:
            raise ConfigError(f"model.extra.p_uncond must be a number in [0, 1), got {self.p_uncond!r}")
        check_heads(self.heads, hidden)


def normal_cdf(q: Tensor) -> Tensor:
    """A standard normal draw -> a U(0, 1) draw (the normal CDF), so every draw is a task_randn."""
    return 0.5 * torch.erfc(-q / math.sqrt(2))


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal features of t in [0, 1], (B,) -> (B, dim) (Vaswani et al. 2017; DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    arg = 1000.0 * t.float()[:, None] * freqs  # (B, half)
    return torch.cat([arg.sin(), arg.cos()], -1)


def space_to_depth(z: Tensor) -> Tensor:
    """(B, C, S, S) -> (B, 4C, S/2, S/2): each 2x2 block into channels (F.pixel_unshuffle, written
    with reshapes because pixel_unshuffle mis-batches under torch.func.vmap)."""
    B, C, S, _ = z.shape
    return z.reshape(B, C, S // 2, 2, S // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(B, 4 * C, S // 2, S // 2)


def depth_to_space(h: Tensor) -> Tensor:
    """The inverse of :func:`space_to_depth`: (B, 4C, S/2, S/2) -> (B, C, S, S)."""
    B, C4, H, _ = h.shape
    return h.reshape(B, C4 // 4, 2, 2, H, H).permute(0, 1, 4, 2, 5, 3).reshape(B, C4 // 4, 2 * H, 2 * H)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, twice, the time embedding as a scale and shift in between."""

    def __init__(self, cin: int, cout: int, temb: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(min(8, cin), cin), nn.Conv2d(cin, cout, 3, 1, 1)
        self.film = nn.Linear(temb, 2 * cout)
        self.norm2, self.conv2 = nn.GroupNorm(min(8, cout), cout), nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, h: Tensor, temb: Tensor) -> Tensor:  # (B, cin, H, W), (B, temb) -> (B, cout, H, W)
        y = self.conv1(F.silu(self.norm1(h)))
        scale, shift = self.film(temb)[:, :, None, None].chunk(2, 1)
        y = self.conv2(F.silu(self.norm2(y) * (1 + scale) + shift))
        return self.skip(h) + y


class ImageDiffusion(GenerativeModel):
    """Set-conditioned v-prediction diffusion U-Net; implements the :mod:`fewgen.models.base` contract."""

    family = "image_diffusion"
    modality = "image"
    Extra = ImageDiffusionExtra
    # train.ema "auto": the weight average samples better (held-out Omniglot FID 3.84 against 4.07,
    # fidelity 0.77 against 0.70; on the icons' meta-validation names the bound 4.32 against 4.45
    # bits/dim at the same 900 CPU-seconds: docs/results.md)
    weight_average = 0.999

    def __init__(self, image_size: int = 28, channels: int = 1, hidden: int = 32, context: int = 128,
                 heads: int = 4, p_uncond: float = 0.2, template: bool | str = True, pixels: str = "auto") -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError("image_size must be divisible by 4")
        ImageDiffusionExtra(heads, p_uncond, template, pixels).validate(hidden)
        self.kwargs = dict(image_size=image_size, channels=channels, hidden=hidden, context=context, heads=heads,
                           p_uncond=p_uncond, template=template)
        self.pixels, stored = stored_pixels(pixels, channels)  # one-channel binary models (all before the key) store none
        self.kwargs.update(stored)
        # template: the support's mean image enters the U-Net as extra input channels beside z_t
        # (zeros when the support is empty or dropped): a spatial hint of where the strokes go
        # that convolutions pick up within a few hundred steps, long before cross-attention has
        # learnt to find them (the VAE's mean-image template, here as input).
        self.template = template
        self.image_size, self.channels, self.hidden, self.p_uncond = image_size, channels, hidden, p_uncond
        h, temb = hidden, 4 * hidden
        self.encoder = SupportEncoder(image_size, channels, hidden, context)
        self.temb = mlp([h, temb, temb])
        cin = 4 * channels * (2 if self.template else 1)  # after the 2x2 pixel unshuffle of z_t (and the template)
        self.inp = nn.Conv2d(cin, h, 3, 1, 1)  # (cin, S/2, S/2) -> (h, S/2, S/2)
        self.down_res = ResBlock(h, h, temb)
        self.down = nn.Conv2d(h, 2 * h, 3, 2, 1)  # S/2 -> S/4
        self.mid_res1, self.mid_att = ResBlock(2 * h, 2 * h, temb), CrossAttention(2 * h, context, heads)
        self.mid_res2 = ResBlock(2 * h, 2 * h, temb)
        self.up = nn.ConvTranspose2d(2 * h, h, 4, 2, 1)  # S/4 -> S/2
        self.up_res, self.up_att = ResBlock(2 * h, h, temb), CrossAttention(h, context, heads)
        self.out_norm, self.out = nn.GroupNorm(min(8, h), h), nn.Conv2d(h, 4 * channels, 3, 1, 1)
        nn.init.zeros_(self.out.weight)  # a new model predicts v = 0: x_hat = alpha z
        nn.init.zeros_(self.out.bias)
        a, b = math.atan(math.exp(-LOGSNR_MAX / 2)), math.atan(math.exp(-LOGSNR_MIN / 2))
        self.u0, self.u1 = a, b  # u = u0 + t (u1 - u0); alpha = cos u, sigma = sin u

    def config_dict(self) -> dict[str, Any]:
        return dict(self.kwargs)

    # ------------------------------------------------------------------ the schedule
    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """The cosine schedule at t in [0, 1]: alpha_t, sigma_t (alpha^2 + sigma^2 = 1)."""
        u = self.u0 + t * (self.u1 - self.u0)
        return torch.cos(u), torch.sin(u)

    def elbo_weight(self, t: Tensor) -> Tensor:
        """-0.5 lambda'(t) alpha_t^2: the weight of ||v - v_hat||^2 in the bound's diffusion term
        (lambda = -2 log tan u, so -lambda' = 2 (u1 - u0) / (sin u cos u))."""
        u = self.u0 + t * (self.u1 - self.u0)
        return (self.u1 - self.u0) * torch.cos(u) / torch.sin(u)

    # ------------------------------------------------------------------ the denoiser
    def denoise(self, z: Tensor, t: Tensor, context: Context, keep: Tensor | None = None) -> Tensor:
        """v_hat for noised images z (B, C, S, S) at times t (B,), B = T*n grouped by task; ``keep``
        (B,) bool drops the support of the False ones (unconditional)."""
        tokens, mask = context["tokens"], context["mask"]
        temb = self.temb(timestep_embedding(t, self.hidden).to(z.dtype))  # (B, 4h)
        if self.template:
            z = torch.cat([z, self._template(context, keep, z.shape[0]).to(z.dtype)], 1)  # (B, 2C, S, S)
        h = self.inp(space_to_depth(z))  # (B, h, S/2, S/2)
        h = skip = self.down_res(h, temb)
        h = self.mid_res1(self.down(h), temb)  # (B, 2h, S/4, S/4)
        h = self.mid_res2(self.mid_att(h, tokens, mask, keep), temb)
        h = self.up_res(torch.cat([self.up(h), skip], 1), temb)  # (B, h, S/2, S/2)
        h = self.up_att(h, tokens, mask, keep)
        return depth_to_space(self.out(F.silu(self.out_norm(h))))  # (B, C, S, S)

    def _template(self, context: Context, keep: Tensor | None, batch: int) -> Tensor:
        """Each image's template (B, C, S, S), zero where dropped: its task's mean support image,
        or (``template="shot"``) the shot ``context["pick"]`` (T, B/T) chooses for it."""
        mean = context["mean"]  # (T, C, S, S)
        T, X = mean.shape[0], mean.shape[1:]
        if self.template == "shot" and context["shots"].shape[1] > 0:
            tmpl = self._picked_shots(context, batch)
        else:
            tmpl = mean[:, None].expand(T, batch // T, *X).reshape(batch, *X)
        return tmpl if keep is None else tmpl * keep.reshape(batch, 1, 1, 1).to(tmpl.dtype)

    @staticmethod
    def _picked_shots(context: Context, batch: int) -> Tensor:
        """The shot (B, C, S, S) that ``context["pick"]`` (T, B/T) names for each image."""
        shots = context["shots"]  # (T, K, C, S, S)
        T, X = shots.shape[0], shots.shape[2:]
        n = batch // T
        pick = context["pick"].reshape(T, n, 1, 1, 1, 1).expand(T, n, 1, *X)
        return shots[:, None].expand(T, n, -1, *X).gather(2, pick).reshape(batch, *X)

    def _with_pick(self, context: Context, u: Tensor, force: bool = False) -> Context:
        """The context with ``pick`` (T, n): which present shot each example's template (or, with
        ``force``, its SDEdit start) is, from uniforms ``u`` (T, n) (the present shots come first in
        the context's canonical order)."""
        if self.template != "shot" and not force:
            return context
        count = context["shot_present"].sum(1, keepdim=True)  # (T, 1)
        pick = torch.minimum((u * count).long(), (count - 1).clamp_min(0))
        return {**context, "pick": pick}

    # ------------------------------------------------------------------ the contract
    def context(self, support: Tensor, mask: Tensor) -> Context:
        """support (T, K, C, S, S), mask (T, K) -> {"tokens": (T, 1+K*P, D), "mask": (T, 1+K*P),
        "mean": (T, C, S, S)}: the set token and every shot's P = (S/4)^2 patch tokens (absent
        shots masked out), and the mean of the present shots (zeros for an empty set)."""
        tokens, tok_mask = self.encoder(support, mask)
        T, K = mask.shape
        S, C = self.image_size, self.channels
        if K == 0:
            mean = support.new_zeros(T, C, S, S)
        else:
            mean = masked_mean(support.flatten(2), mask)[0].reshape(T, C, S, S)  # zeros for an empty set
        # The shots themselves (templates with template="shot", SDEdit starts), in a canonical
        # order: present first, then by a fixed projection, so the context ignores the support's order.
        flat = support.flatten(2) * mask[..., None].to(support.dtype)  # (T, K, C*S*S), absent: zeros
        proj = torch.cos(torch.arange(flat.shape[-1], device=flat.device, dtype=flat.dtype) * 1.618)
        order = canonical_order(flat @ proj, mask)  # (T, K)
        return {"tokens": tokens, "mask": tok_mask, "mean": mean,
                "shots": flat.gather(1, order[..., None].expand_as(flat)).reshape(T, K, C, S, S),
                "shot_present": mask.gather(1, order)}

    def draw_noise(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """(T, N, E + C*S*S) standard normals: the time (as a normal quantile), the support-drop
        decision (likewise), with ``template="shot"`` the template shot (likewise; E = 3, else 2)
        and the image noise eps, so :meth:`loss` is a pure function."""
        return task_randn((*x.shape[:2], self._extra_noise() + math.prod(x.shape[2:])), generator, x.device)

    def _extra_noise(self) -> int:
        return 3 if self.template == "shot" else 2

    def _noised(self, x: Tensor, t: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """x in [0, 1] (..., C, S, S), t (...), eps like x -> z_t and the target v, in [-1, 1] units."""
        x0 = 2 * x - 1
        alpha, sigma = (s[..., None, None, None] for s in self.alpha_sigma(t))
        return alpha * x0 + sigma * eps, alpha * eps - sigma * x0

    def loss(self, x: Tensor, context: Context, noise: Tensor | None) -> Tensor:
        """0.5 ||v - v_hat||^2 summed over pixels, x (T, N, C, S, S) -> (T, N) (the training
        objective; see the module docstring). Without ``noise``: t = 0.5, eps = 0, no drop."""
        T, N = x.shape[:2]
        e = self._extra_noise()
        if noise is None:
            noise = x.new_zeros(T, N, e + math.prod(x.shape[2:]))
        t, keep = normal_cdf(noise[..., 0]), normal_cdf(noise[..., 1]) >= self.p_uncond  # (T, N)
        if e == 3:
            context = self._with_pick(context, normal_cdf(noise[..., 2]))
        z, v = self._noised(x, t, noise[..., e:].reshape(x.shape))
        v_hat = self.denoise(z.flatten(0, 1), t.flatten(), context, keep.flatten())  # (B, C, S, S)
        return 0.5 * (v_hat - v.flatten(0, 1)).square().flatten(1).sum(-1).reshape(T, N)

    def nll(self, x: Tensor, context: Context, num_samples: int = 100, chunk: int = 25,
            generator: torch.Generator | None = None) -> Tensor:
        """VDM's variational bound on -log p(x | support) in nats, x (T, N, C, S, S) -> (T, N),
        estimated with ``num_samples`` stratified times per example, ``chunk`` at a time (memory
        for T*N*chunk images whatever ``num_samples``). See the module docstring.

        With ``template="shot"`` the model is the equal mixture over the present shots of the
        denoiser given shot k as its template; since each shot's bound B_k is above -log p_k(x),
        ``-log mean_k exp(-B_k)`` is a bound on the mixture's -log p(x). The B_k are estimated with
        the same draws (common random numbers); the log-mean-exp of the estimates is a slightly
        optimistic (Jensen) estimate of that bound, unlike the single-template case."""
        shots = context.get("shot_present")
        if self.template != "shot" or shots is None or shots.shape[1] == 0:
            return self._bound(x, context, num_samples, chunk, generator)
        if generator is None:
            generator = torch.Generator(x.device).manual_seed(int(torch.randint(2**62, (1,))))
        state, T, N = generator.get_state(), *x.shape[:2]
        per_shot = []
        for k in range(shots.shape[1]):  # a loop over the K shots (not over examples)
            generator.set_state(state)
            pick = torch.full((T, N), k, dtype=torch.long, device=x.device)
            per_shot.append(self._bound(x, {**context, "pick": pick}, num_samples, chunk, generator))
        b = torch.stack(per_shot, -1).masked_fill(~shots[:, None, :], float("inf"))  # (T, N, K)
        count = shots.sum(1).clamp_min(1).to(b.dtype)[:, None]  # (T, 1)
        return -torch.logsumexp(-b, -1) + torch.log(count)

    def _bound(self, x: Tensor, context: Context, num_samples: int, chunk: int,
               generator: torch.Generator | None) -> Tensor:
        """The variational bound (T, N) of :meth:`nll` for one denoiser (one template per example)."""
        T, N = x.shape[:2]
        if self.pixels == "8bit":  # the data are the 256 levels: the bound is of those values
            x = levels(x).to(x.dtype) / (LEVELS - 1)
        x0 = 2 * x - 1
        one, zero = x.new_ones(()), x.new_zeros(())
        a1, s1 = self.alpha_sigma(one)
        prior = 0.5 * (a1**2 * x0**2 + s1**2 - 1 - torch.log(s1**2)).flatten(2).sum(-1)  # (T, N)
        a0, s0 = self.alpha_sigma(zero)
        z0 = a0 * x0 + s0 * task_randn(x.shape, generator, x.device)
        if self.pixels == "8bit":
            recon = categorical_decoder_nll(x, z0, a0, s0)
        else:
            recon = F.binary_cross_entropy_with_logits(2 * a0 * z0 / s0**2, x, reduction="none").flatten(2).sum(-1)
        offset = normal_cdf(task_randn((T, N), generator, x.device))  # each example's stratum offset
        diffusion, done = x.new_zeros(T, N), 0
        while done < num_samples:
            s = min(chunk, num_samples - done)
            j = torch.arange(done, done + s, device=x.device, dtype=x.dtype)  # stratified: t_j in [j/M, (j+1)/M)
            t = ((j[None, :, None] + offset[:, None, :]) / num_samples).reshape(T, s * N)  # (T, s*N)
            xs = x.repeat(1, s, 1, 1, 1)  # (T, s*N, C, S, S): s copies, chunk-major
            ctx = context if "pick" not in context else {**context, "pick": context["pick"].repeat(1, s)}
            # One draw per time (not per chunk), so the estimate does not depend on ``chunk``.
            eps = torch.stack([task_randn(x.shape, generator, x.device) for _ in range(s)], 1).reshape(xs.shape)
            z, v = self._noised(xs, t, eps)
            v_hat = self._v_clamped(z.flatten(0, 1), t.flatten(), ctx)  # (T*s*N, C, S, S)
            err = (v_hat - v.flatten(0, 1)).square().flatten(1).sum(-1).reshape(T, s, N)
            diffusion = diffusion + (self.elbo_weight(t).reshape(T, s, N) * err).sum(1)
            done += s
        return prior + recon + diffusion / num_samples

    def _v_clamped(self, z: Tensor, t: Tensor, context: Context, keep: Tensor | None = None) -> Tensor:
        """v_hat of the model whose image prediction is clipped to [-1, 1] (the data range): the
        model both the sampler and the bound use."""
        alpha, sigma = (s[:, None, None, None] for s in self.alpha_sigma(t))
        x_hat = (alpha * z - sigma * self.denoise(z, t, context, keep)).clamp(-1, 1)
        return (alpha * z - x_hat) / sigma

    # ------------------------------------------------------------------ sampling
    def sample_options(self, ecfg: EvalConfig) -> dict[str, Any]:
        """The sampler ``ecfg`` configures: ``eval.guidance``, ``eval.sample_steps``, ``eval.sampler``
        and ``eval.strength`` (:meth:`sample`'s defaults are :class:`EvalConfig`'s)."""
        return {"guidance": ecfg.guidance, "steps": ecfg.sample_steps, "sampler": ecfg.sampler,
                "strength": ecfg.strength}

    def sampler_variants(self, ecfg: EvalConfig) -> list[tuple[str, dict[str, Any]]]:
        """The configured sampler, labelled by its guidance and steps."""
        opts = self.sample_options(ecfg)
        return [(f"guidance {opts['guidance']:g}, {opts['steps']} {opts['sampler']} steps", opts)]

    def sample(self, n: int, context: Context, generator: torch.Generator | None = None,
               guidance: float = EvalConfig.guidance, steps: int = EvalConfig.sample_steps,
               sampler: str = EvalConfig.sampler, strength: float = EvalConfig.strength) -> Tensor:
        """n samples per task, (T, n, C, S, S) in [0, 1]: ``steps`` DDIM (``sampler="ddim"``) or
        ancestral (``"ddpm"``) steps at classifier-free guidance ``guidance`` (see the module
        docstring and :mod:`fewgen.models.diffusion_sampler`); the defaults are the eval config's.

        ``strength`` 1 draws from the model's own distribution, starting at z_1 ~ N(0, I). Below 1
        each sample is a *variation of a shot* (SDEdit, Meng et al. 2022): a present shot, drawn
        uniformly (the template shot with ``template="shot"``), is noised to t = ``strength``,
        z = alpha_t x_k + sigma_t eps, and denoised given the support in ``ceil(steps * strength)``
        steps. The shot's coarse layout survives, the strokes are redrawn: samples follow the
        support closely, as the VAE's ``fusion`` sampler does, but sharp; they are not draws of
        the density ``nll`` scores (memorisation grows as ``strength`` falls)."""
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        if steps < 1 or not 0 <= guidance < math.inf or not 0 < strength <= 1:
            raise ValueError(f"need steps >= 1, a finite guidance >= 0 and strength in (0, 1], "
                             f"got {steps}, {guidance}, {strength}")
        T, S = context["tokens"].shape[0], self.image_size
        z = task_randn((T, n, self.channels, S, S), generator, context["tokens"].device)  # z_1 ~ N(0, I)
        u = normal_cdf(task_randn((T, n), generator, z.device))  # each sample's shot, uniformly among the present
        context = self._with_pick(context, u, force=strength < 1)
        if strength < 1:
            if not bool(context["shot_present"].any(1).all()):
                raise ValueError("strength below 1 makes variations of a shot: every task needs at least one")
            a, s_ = self.alpha_sigma(torch.tensor(strength, device=z.device))
            z = a * (2 * self._picked_shots(context, T * n).reshape(z.shape) - 1) + s_ * z
            steps = max(1, math.ceil(steps * strength))
        x_hat = ddim_loop(self.alpha_sigma, z, lambda zt, t: guided_v(self._v_clamped, zt, t, context, guidance),
                          steps, SAMPLERS[sampler], generator, start=strength)
        return (x_hat + 1) / 2


def build_image_diffusion(cfg: ModelConfig, data_meta: dict[str, Any]) -> ImageDiffusion:
    """The ``image_diffusion`` family for images ``data_meta["example_shape"]`` = (C, S, S), its
    ``model.extra`` keys parsed and validated (:class:`ImageDiffusionExtra`; one-line errors)."""
    if data_meta.get("modality", "image") != "image":
        raise ConfigError(f"model.family image_diffusion is for images, not {data_meta.get('modality')} data")
    extra = parse_extra(ImageDiffusion, cfg)
    c, s, _ = data_meta["example_shape"]
    if s % 4:
        raise ConfigError(f"data.image_size must be divisible by 4 for image_diffusion, got {s}")
    return ImageDiffusion(image_size=s, channels=c, hidden=cfg.hidden, context=cfg.context, **dataclasses.asdict(extra))
