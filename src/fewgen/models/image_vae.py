"""A set-conditioned convolutional VAE for images (Neural Statistician style).

Edwards & Storkey, "Towards a Neural Statistician" (ICLR 2017): a permutation-invariant
encoder of the support set gives a context ``c``; the VAE's prior ``p(z | c)``, posterior
``q(z | x, c)`` and decoder ``p(x | z, c)`` are all conditioned on it. Here ``c`` is a
deterministic set encoding (mean-pooled, so any number of shots works, zero included: the
empty set gives the unconditional model). The likelihood over pixels is ``model.extra.pixels``
(:mod:`fewgen.models.pixels`): Bernoulli for binary ink, a discretised logistic per sub-pixel
for 8-bit colour.

The context (a dict, contract v2) holds a learned vector (``vec``), the pixel-wise mean of the
support images (``mean_image``) and each shot's posterior. The decoder reads the mean image at every resolution it
draws at: a spatial template that tells it *where* the strokes of this character go, which a
vector alone conveys poorly in short training (a skip connection from the support, in the
spirit of the support attention of Reed et al. 2017, "Few-shot autoregressive density
estimation"; here simply its mean).

With ``attention`` (``model.extra.attention = true``) the decoder also reads the shots
themselves: each shot becomes 49 patch tokens (a shared conv encoder; a pooled set token
beside them) and the decoder's 7x7 and 14x14 feature maps attend to the tokens of all present
shots (:mod:`fewgen.models.attention`, the same blocks as ``image_diffusion``): the support
attention of Reed et al. 2017 and Generative Matching Networks (Bartunov & Vetrov 2018), in
place of a mean that blurs K different drawings into one template.

Shapes: T tasks, K shots, N examples, images (C, S, S) with S divisible by 4.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..noise import task_randn
from ..config import EvalConfig, ModelConfig
from ..errors import ConfigError
from .attention import CrossAttention, SupportEncoder
from .base import Context, GenerativeModel, check_heads, parse_extra
from .pixels import decoder_log_prob, decoder_mean, resolve_pixels, stored_pixels
from .nn import canonical_order, conv_block, deconv_block, gaussian_kl, gaussian_log_prob, masked_mean, mlp
from .task_conv import TaskConv2d


PRIORS = ("mlp", "mixture")


@dataclass(frozen=True)
class ImageVAEExtra:
    """The ``model.extra`` keys of ``image_vae`` (constructor arguments of the same names)."""

    # Attention to the shots (one head) is the default: at an equal CPU budget on held-out
    # Omniglot alphabets it doubles what one shot is worth (docs/results.md, "attention to the shots").
    attention: bool = True  # the decoder attends to the shots' patch tokens
    heads: int = 1  # attention heads (with attention): a positive divisor of model.hidden
    features: int = 256  # width of the per-image feature trunk, >= 1
    kl_weight: float = 1.0  # beta of the training loss's KL term, > 0 (nll always uses 1)
    prior: str = "mlp"  # p(z | support): mlp | mixture (also one Gaussian per shot)
    pixels: str = "auto"  # the decoder's likelihood: binary (Bernoulli) | 8bit (discretised logistic) | auto (by channels)

    def validate(self, hidden: int) -> None:
        """One-line ConfigErrors naming the key of a value out of range."""
        resolve_pixels(self.pixels, 1)
        if self.attention:
            check_heads(self.heads, hidden)
        if self.prior not in PRIORS:
            raise ConfigError(f"model.extra.prior must be mlp or mixture, got {self.prior!r}")
        if not self.kl_weight > 0:
            raise ConfigError(f"model.extra.kl_weight must be a positive number, got {self.kl_weight!r}")
        if self.features < 1:
            raise ConfigError(f"model.extra.features must be a positive integer, got {self.features!r}")


class ImageVAE(GenerativeModel):
    """Set-conditioned conv VAE; implements the :mod:`fewgen.models.base` contract."""

    family = "image_vae"
    modality = "image"
    Extra = ImageVAEExtra

    def __init__(self, image_size: int = 28, channels: int = 1, hidden: int = 32, latent: int = 32,
                 context: int = 128, features: int = 256, kl_weight: float = 1.0, prior: str = "mlp",
                 attention: bool = False, heads: int = 4, pixels: str = "auto") -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError("image_size must be divisible by 4")
        # the constructor's defaults are those of checkpoints made before attention (they store no attention)
        ImageVAEExtra(attention, heads, features, kl_weight, prior, pixels).validate(hidden)
        self.kwargs = dict(image_size=image_size, channels=channels, hidden=hidden, latent=latent,
                           context=context, features=features, kl_weight=kl_weight)
        if prior != "mlp":  # absent from checkpoints made before the option: they load unchanged
            self.kwargs["prior"] = prior
        if attention:  # likewise
            self.kwargs.update(attention=True, heads=heads)
        self.pixels, stored = stored_pixels(pixels, channels)  # likewise: one-channel binary models store no key
        self.kwargs.update(stored)
        # the decoder's output channels: Bernoulli logits, or a logistic's means and log-scales
        self.out_channels = channels * (2 if self.pixels == "8bit" else 1)
        # prior = "mixture": p(z | support) is an equal mixture of the prior MLP's Gaussian and one
        # Gaussian per shot, N(mu_k, sigma_k^2 + s^2) around the shot's posterior (s learned): a
        # VampPrior (Tomczak & Welling 2018) whose pseudo-inputs are the support itself. The
        # model's own samples then come from around the support's drawings, and nll() scores
        # that same density. The KL term has no closed form: one reparameterised sample.
        self.prior_kind = prior
        # The training loss weighs the per-example KL by kl_weight (beta-VAE, Higgins et al. 2017):
        # above 1 it makes per-example latent information dearer than the (free) context, so the
        # model carries a character's identity in the context. nll() always uses the true bound.
        self.kl_weight = kl_weight
        self.image_size, self.channels, self.latent, self.ctx = image_size, channels, latent, context
        s4 = image_size // 4
        self.s4, self.h2 = s4, 2 * hidden
        # Shared per-image feature trunk: used by the set encoder and by q(z | x, c).
        self.trunk = nn.Sequential(
            conv_block(channels, hidden, 2), conv_block(hidden, 2 * hidden, 2),
            nn.Flatten(), nn.Linear(2 * hidden * s4 * s4, features), nn.SiLU(),
        )
        self.set_phi = mlp([features, features, features])  # per-shot embedding before pooling
        self.set_rho = mlp([features + 1, features, context])  # pooled (+ log shot count) -> context
        self.prior = mlp([context, features, 2 * latent])
        if prior == "mixture":
            self.log_spread = nn.Parameter(torch.full((latent,), -2.0))  # log s^2
        self.posterior = mlp([features + context, features, 2 * latent])
        self.dec_in = nn.Sequential(nn.Linear(latent + context, 2 * hidden * s4 * s4), nn.SiLU())
        # Each stage also sees the support's mean image at its resolution (+ channels inputs).
        self.up1 = deconv_block(2 * hidden + channels, hidden)
        self.up2 = deconv_block(hidden + channels, hidden)
        self.out = nn.Sequential(conv_block(hidden + channels, hidden, 1), TaskConv2d(hidden, self.out_channels, 3, 1, 1))
        self.template = self._template_path(channels)
        self.attention = attention
        if attention:  # the shots' tokens, and the decoder's 7x7 and 14x14 maps attending to them
            self.tokens = SupportEncoder(image_size, channels, hidden, context)
            self.att4, self.att2 = CrossAttention(2 * hidden, context, heads), CrossAttention(hidden, context, heads)

    def config_dict(self) -> dict[str, Any]:
        return dict(self.kwargs)

    def _template_path(self, channels: int) -> nn.Conv2d:
        """A direct path from the support's mean image to the decoder's output: the decoder learns a
        residual on top of the template, so conditioning pays off from the first step instead of
        losing out to the per-example latent (which otherwise learns to ignore the context). It
        starts as the mean image itself: logits 4m - 2 (binary); means m, scales 0.05 (8bit)."""
        conv = nn.Conv2d(channels, self.out_channels, 5, 1, 2)
        with torch.no_grad():
            conv.weight.zero_()
            binary = self.pixels == "binary"
            conv.weight[:channels, :, 2, 2] = (4.0 if binary else 1.0) * torch.eye(channels)
            conv.bias.fill_(-2.0 if binary else 0.0)
            conv.bias[channels:] = math.log(0.05)
        return conv

    # ------------------------------------------------------------------ pieces
    def features(self, x: Tensor) -> Tensor:
        """(..., C, S, S) -> (..., F)."""
        lead = x.shape[:-3]
        return self.trunk(x.reshape(-1, *x.shape[-3:])).reshape(*lead, -1)

    def decode_logits(self, z: Tensor, c: Context) -> Tensor:
        """z (..., Z) and a context whose leaves broadcast to z's leading axes (``vec`` (..., ctx),
        ``mean_image`` (..., C, S, S)) -> the decoder's output (..., O, S, S): Bernoulli logits
        (O = C) or a discretised logistic's means and log-scales (O = 2C; :mod:`.pixels`)."""
        lead = z.shape[:-1]
        S = self.image_size
        vec = c["vec"].expand(*lead, self.ctx)
        m1 = c["mean_image"].expand(*lead, self.channels, S, S).reshape(-1, self.channels, S, S)  # (B, C, S, S)
        m2 = F.avg_pool2d(m1, 2)
        m4 = F.avg_pool2d(m2, 2)
        h = self.dec_in(torch.cat([z, vec], -1)).reshape(-1, self.h2, self.s4, self.s4)
        if self.attention:
            tok, tok_mask = self._tokens(c, lead)
            h = self.att4(h, tok, tok_mask)
        h = self.up1(torch.cat([h, m4], 1))
        if self.attention:
            h = self.att2(h, tok, tok_mask)
        h = self.up2(torch.cat([h, m2], 1))
        return (self.out(torch.cat([h, m1], 1)) + self.template(m1)).reshape(*lead, self.out_channels, S, S)

    @staticmethod
    def _tokens(c: Context, lead: torch.Size) -> tuple[Tensor, Tensor]:
        """The support's tokens (T, L, D) and mask (T, L) for decoding a batch with leading axes
        ``lead``, task first (the decoded maps are grouped task-major); a context of one task
        serves every task axis."""
        tok, mask = c["tokens"], c["token_mask"]
        T = tok.shape[0]
        if T not in (1, lead[0]):
            raise ValueError(f"a context of {T} tasks cannot decode a batch with leading axes {tuple(lead)}")
        return tok.reshape(T, *tok.shape[-2:]), mask.reshape(T, mask.shape[-1])

    def _prior(self, c: Context) -> tuple[Tensor, Tensor]:
        mu, logvar = self.prior(c["vec"]).chunk(2, -1)
        return mu, logvar.clamp(-8, 6)

    def _posterior(self, f: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """q(z | x, c) from features f (..., F) and the context vector c broadcastable to (..., ctx)."""
        mu, logvar = self.posterior(torch.cat([f, c.expand(*f.shape[:-1], c.shape[-1])], -1)).chunk(2, -1)
        return mu, logvar.clamp(-8, 6)

    def _log_prob(self, out: Tensor, x: Tensor) -> Tensor:
        """log p(x | the decoder's output) summed over (C, S, S) (:mod:`.pixels`)."""
        return decoder_log_prob(self.pixels, out, x, self.channels)

    # ------------------------------------------------------------------ the contract
    def context(self, support: Tensor, mask: Tensor) -> Context:
        """support (T,K,C,S,S), mask (T,K) -> the context, a dict of:

        - ``vec`` (T, ctx): the learned set encoding;
        - ``mean_image`` (T, C, S, S): the present shots' mean image (zeros for an empty set);
        - ``shot_mu``, ``shot_logvar`` (T, K, Z): each shot's posterior q(z | x_k, c), zeros
          where absent, which the ``fusion`` sampler and the ``mixture`` prior read;
        - ``shot_present`` (T, K) bool;
        - with ``attention``: ``tokens`` (T, 1 + K*P, D) and ``token_mask`` (T, 1 + K*P), the
          support's tokens (:class:`~fewgen.models.attention.SupportEncoder`).

        Shots are stored in a canonical order (present ones first, by their first latent
        coordinate), so the context itself is invariant to the order of the support. An empty
        support gives the unconditional context."""
        T, K = mask.shape
        if K == 0:
            pooled = support.new_zeros(T, self.set_rho[0].in_features - 1)
            count = support.new_zeros(T, 1)
            mean_img = support.new_zeros(T, self.channels, self.image_size, self.image_size)
        else:
            feats = self.features(support)  # (T, K, F)
            pooled, count = masked_mean(self.set_phi(feats), mask)
            mean_img = masked_mean(support.flatten(2), mask)[0].reshape(T, *support.shape[2:])
        vec = self.set_rho(torch.cat([pooled, torch.log1p(count)], -1))
        att = dict(zip(("tokens", "token_mask"), self.tokens(support, mask))) if self.attention else {}
        if K == 0:
            empty = vec.new_zeros(T, 0, self.latent)
            return {"vec": vec, "mean_image": mean_img, "shot_mu": empty, "shot_logvar": empty,
                    "shot_present": mask, **att}
        present = mask.to(vec.dtype)[..., None]  # (T, K, 1)
        mu_k, lv_k = self._posterior(feats, vec[:, None, :])  # (T, K, Z)
        order = canonical_order(mu_k[..., 0], mask)  # (T, K)
        idx = order[..., None].expand_as(mu_k)
        return {"vec": vec, "mean_image": mean_img, "shot_mu": (mu_k * present).gather(1, idx),
                "shot_logvar": (lv_k * present).gather(1, idx), "shot_present": mask.gather(1, order), **att}

    @staticmethod
    def _per_example(c: Context) -> Context:
        """The context with an example axis after the task axis, to broadcast against (T, N, ...)."""
        return {k: v[:, None] for k, v in c.items()}

    def _components(self, c: Context) -> tuple[Tensor, Tensor, Tensor]:
        """The prior's Gaussian components for a context with leading axes (...): means and
        log-variances (..., M, Z) and which are present (..., M). ``mlp``: one, the prior MLP's;
        ``mixture``: that one and one per present shot."""
        mu_p, lv_p = self._prior(c)
        mu, lv, present = mu_p[..., None, :], lv_p[..., None, :], torch.ones_like(mu_p[..., :1], dtype=torch.bool)
        if self.prior_kind == "mixture" and c["shot_mu"].shape[-2] > 0:
            lv_k = torch.logaddexp(c["shot_logvar"], self.log_spread.clamp(-8, 6))  # sigma_k^2 + s^2
            mu, lv = torch.cat([mu, c["shot_mu"]], -2), torch.cat([lv, lv_k], -2)
            present = torch.cat([present, c["shot_present"]], -1)
        return mu, lv, present

    def _prior_log_prob(self, z: Tensor, c: Context) -> Tensor:
        """log p(z | c) for z (..., Z) and a context whose leaves broadcast to z's leading axes."""
        mu, lv, present = self._components(c)
        if mu.shape[-2] == 1:
            return gaussian_log_prob(z, mu[..., 0, :], lv[..., 0, :])
        per = gaussian_log_prob(z[..., None, :], mu, lv)  # (..., M)
        per = per.masked_fill(~present, float("-inf"))
        return torch.logsumexp(per, -1) - present.sum(-1).to(per.dtype).log()

    def draw_noise(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        return task_randn((*x.shape[:-3], self.latent), generator, x.device)  # (T,N,Z)

    def loss(self, x: Tensor, context: Context, noise: Tensor | None) -> Tensor:
        """Negative ELBO in nats, x (T,N,C,S,S) -> (T,N). ``noise`` (T,N,Z) reparameterises z."""
        c = self._per_example(context)  # leaves (T,1,...)
        mu_q, lv_q = self._posterior(self.features(x), c["vec"])
        eps = noise if noise is not None else torch.zeros_like(mu_q)
        z = mu_q + (0.5 * lv_q).exp() * eps
        rec = self._log_prob(self.decode_logits(z, c), x)
        if self.prior_kind == "mixture":  # one-sample KL estimate: log q(z | x) - log p(z | c)
            kl = gaussian_log_prob(z, mu_q, lv_q) - self._prior_log_prob(z, c)
        else:
            mu_p, lv_p = self._prior(c)
            kl = gaussian_kl(mu_q, lv_q, mu_p, lv_p)
        return -rec + self.kl_weight * kl

    def nll(self, x: Tensor, context: Context, num_samples: int = 100, chunk: int = 25,
            generator: torch.Generator | None = None) -> Tensor:
        """Importance-weighted estimate of -log p(x | c) (Burda et al. 2016, IWAE) in nats, (T,N).

        The ``num_samples`` importance samples are drawn ``chunk`` at a time and combined with a
        running log-sum-exp, so memory is bounded by ``T*N*chunk`` decodes whatever ``num_samples``;
        given the generator, the estimate is the same for every ``chunk``.
        """
        c = self._per_example(context)  # leaves (T,1,...)
        mu_q, lv_q = self._posterior(self.features(x), c["vec"])  # (T,N,Z)
        c, mu_q, lv_q = self._per_example(c), mu_q[:, None], lv_q[:, None]  # (T,1,1,...), (T,1,N,Z): samples on axis 1
        acc = None
        done = 0
        while done < num_samples:
            s = min(chunk, num_samples - done)
            # One draw per importance sample, so the estimate does not depend on ``chunk``.
            eps = torch.stack([torch.randn((mu_q.shape[0], *mu_q.shape[2:]), generator=generator, device=x.device) for _ in range(s)], 1)
            z = mu_q + (0.5 * lv_q).exp() * eps  # (T,s,N,Z): task-major, as the decoder groups its maps
            log_w = (self._log_prob(self.decode_logits(z, c), x[:, None])
                     + self._prior_log_prob(z, c) - gaussian_log_prob(z, mu_q, lv_q))  # (T,s,N)
            part = torch.logsumexp(log_w, 1)
            acc = part if acc is None else torch.logaddexp(acc, part)
            done += s
        return -(acc - math.log(num_samples))

    def sample_options(self, ecfg: EvalConfig) -> dict[str, Any]:
        """The latent sampler ``ecfg`` configures (``eval.latent``)."""
        return {"latent": ecfg.latent}

    def sampler_variants(self, ecfg: EvalConfig) -> list[tuple[str, dict[str, Any]]]:
        """Both latent samplers, the configured one first: ``prior`` is the model's own
        distribution, ``fusion`` blends the shots (a quality table shows them side by side)."""
        other = "prior" if ecfg.latent == "fusion" else "fusion"
        return [(ecfg.latent, self.sample_options(ecfg)), (other, {"latent": other})]

    def sample(self, n: int, context: Context, generator: torch.Generator | None = None,
               latent: str = EvalConfig.latent) -> Tensor:
        """n samples per task, (T,n,C,S,S): the decoder's mean (ink probabilities, or the
        logistic's means for 8-bit pixels), as is customary for VAEs, at latents drawn by one of two samplers (default: the eval
        config's, ``eval.latent``):

        - ``prior``: z ~ p(z | c), the model's own distribution (the one ``nll`` scores); with
          ``prior = "mixture"`` a component is picked uniformly first.
        - ``fusion``: z = sum_k w_k (mu_k + sigma_k eps) with Dirichlet(1) weights w over the
          present shots' posteriors q(z | x_k, c): random blends of the support's own drawings
          in latent space (the fusion samplers of few-shot image generation, e.g. F2GAN, Hong
          et al. 2020; LoFGAN, Gu et al. 2021). Samples follow the support closely, at the
          price of being near it (``fewgen bench`` reports memorisation). Tasks without shots
          fall back to ``prior``.
        """
        z = self.draw_latents(n, context, generator, latent)
        return decoder_mean(self.pixels, self.decode_logits(z, self._per_example(context)), self.channels)

    def draw_latents(self, n: int, context: Context, generator: torch.Generator | None = None,
                     latent: str = "prior") -> Tensor:
        """The latents (T, n, Z) that :meth:`sample` decodes (see there for the two samplers)."""
        if latent not in ("prior", "fusion"):
            raise ValueError(f"latent sampler must be prior or fusion, got {latent!r}")
        mu, lv, present_m = self._components(context)  # (T, M, Z), (T, M)
        T, dev = mu.shape[0], mu.device
        eps = torch.randn(T, n, self.latent, generator=generator, device=dev)
        if mu.shape[1] == 1:
            z = mu + (0.5 * lv).exp() * eps
        else:  # a component per sample, uniformly among the present ones, then z from it
            u = torch.rand(T, n, generator=generator, device=dev)
            cum = present_m.to(u.dtype).cumsum(-1)  # (T, M)
            pick = (u[..., None] * cum[:, None, -1:] >= cum[:, None, :]).sum(-1)  # (T, n) in [0, M)
            idx = pick[..., None].expand(-1, -1, self.latent)
            z = mu.gather(1, idx) + (0.5 * lv.gather(1, idx)).exp() * eps
        mu_k, lv_k, present = context["shot_mu"], context["shot_logvar"], context["shot_present"]  # (T, K, Z), (T, K)
        if latent == "fusion" and mu_k.shape[1] > 0:
            u = torch.rand(T, n, mu_k.shape[1], generator=generator, device=dev)
            w = -torch.log(u.clamp_min(1e-12)) * present[:, None, :]  # Exp(1) draws: Dirichlet(1) once normalised
            w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)  # (T, n, K)
            fused = w @ mu_k + (w @ (0.5 * lv_k).exp()) * eps  # (T, n, Z)
            z = torch.where(present.any(-1)[:, None, None], fused, z)
        return z


def build_image_vae(cfg: ModelConfig, data_meta: dict[str, Any]) -> ImageVAE:
    """The ``image_vae`` family for images ``data_meta["example_shape"]`` = (C, S, S), its
    ``model.extra`` keys parsed and validated (:class:`ImageVAEExtra`; one-line errors)."""
    extra = parse_extra(ImageVAE, cfg)
    c, s, _ = data_meta["example_shape"]
    if s % 4:
        raise ConfigError(f"data.image_size must be divisible by 4 for image_vae, got {s}")
    return ImageVAE(image_size=s, channels=c, hidden=cfg.hidden, latent=cfg.latent, context=cfg.context,
                    **dataclasses.asdict(extra))
