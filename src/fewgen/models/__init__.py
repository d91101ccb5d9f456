"""Generative-model families; every one implements the contract in :mod:`fewgen.models.base`."""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..errors import ConfigError
from .base import Context, GenerativeModel, Params, call, context_expand, context_tasks, params_of


COUNTED_FAMILIES = ("text_ngram",)  # fit by counting the meta-train data (fit_counts), not by gradient steps


def build_model(cfg: ModelConfig, data_meta: dict[str, Any]) -> GenerativeModel:
    """Build the generator named by ``cfg.family`` for data described by ``data_meta``
    (``TaskSet.meta`` plus ``example_shape``). Low-dimensional ``toy`` data always gets
    ``toy_gauss`` (the image and text families cannot read it)."""
    if data_meta.get("modality") == "toy" or cfg.family == "toy_gauss":
        from .toy_gauss import ToyGauss

        scale = (data_meta.get("mean_scale", 1.0) ** 2 + data_meta.get("std", 0.0) ** 2) ** 0.5 or 1.0
        return ToyGauss(dim=int(data_meta["example_shape"][-1]), hidden=cfg.hidden, context=cfg.context,
                        scale=scale)
    if cfg.family == "image_vae":
        from .image_vae import ImageVAE

        c, s, _ = data_meta["example_shape"]
        unknown = sorted(set(cfg.extra) - {"features", "kl_weight", "prior"})
        if unknown:
            raise ConfigError(f"unknown config key 'model.extra.{unknown[0]}' for image_vae; "
                              "valid: model.extra.features, model.extra.kl_weight, model.extra.prior")
        prior = cfg.extra.get("prior", "mlp")
        if prior not in ("mlp", "mixture"):
            raise ConfigError(f"model.extra.prior must be mlp or mixture, got {prior!r}")
        beta = cfg.extra.get("kl_weight", 1.0)
        if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not beta > 0:
            raise ConfigError(f"model.extra.kl_weight must be a positive number, got {beta!r}")
        f = cfg.extra.get("features", 256)
        if not isinstance(f, int) or isinstance(f, bool) or f < 1:
            raise ConfigError(f"model.extra.features must be a positive integer, got {f!r}")
        if s % 4:
            raise ConfigError(f"data.image_size must be divisible by 4 for image_vae, got {s}")
        return ImageVAE(image_size=s, channels=c, hidden=cfg.hidden, latent=cfg.latent, context=cfg.context, features=f,
                        kl_weight=float(beta), prior=prior)
    if cfg.family == "text_lm":
        from .text_lm import build_text_lm

        return build_text_lm(cfg, data_meta)
    if cfg.family == "text_ngram":
        from .text_ngram import build_text_ngram

        return build_text_ngram(cfg, data_meta)
    raise ConfigError(f"unknown model.family '{cfg.family}'; valid: image_vae, text_lm, text_ngram, toy_gauss")


def model_from_dict(family: str, kwargs: dict[str, Any]) -> GenerativeModel:
    """Rebuild a generator from a checkpoint's stored family and constructor arguments."""
    if family == "image_vae":
        from .image_vae import ImageVAE

        return ImageVAE(**kwargs)
    if family == "text_lm":
        from .text_lm import TextLM

        return TextLM(**kwargs)
    if family == "text_ngram":
        from .text_ngram import TextNgram

        return TextNgram(**kwargs)
    if family == "toy_gauss":
        from .toy_gauss import ToyGauss

        return ToyGauss(**kwargs)
    raise ConfigError(f"unknown model family '{family}' in checkpoint")


__all__ = ["COUNTED_FAMILIES", "Context", "GenerativeModel", "Params", "build_model", "call", "context_expand",
           "context_tasks", "model_from_dict", "params_of"]
