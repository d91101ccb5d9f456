"""Generative-model families; every one implements the contract in :mod:`fewgen.models.base`.

A family is one file, ``models/<family>.py``, with its model class, the frozen dataclass of its
``model.extra`` keys (the class's ``Extra``: defaults, allowed values, ``validate``) and a
``build_<family>`` function from the config and the data's facts; :data:`FAMILIES` names them,
and :func:`build_model` / :func:`model_from_dict` / :func:`family_config` import the file only
when the family is used.
"""

from __future__ import annotations

import dataclasses
from importlib import import_module
from typing import Any

from ..config import ModelConfig
from ..errors import ConfigError
from .base import Context, GenerativeModel, Params, call, context_expand, context_tasks, params_of, parse_extra

# family -> (its module, its class, its builder from (ModelConfig, data facts))
FAMILIES: dict[str, tuple[str, str, str]] = {
    "hf_causal_lm": ("hf_causal_lm", "HFCausalLM", "build_hf_causal_lm"),
    "image_diffusion": ("image_diffusion", "ImageDiffusion", "build_image_diffusion"),
    "image_vae": ("image_vae", "ImageVAE", "build_image_vae"),
    "text_lm": ("text_lm", "TextLM", "build_text_lm"),
    "text_ngram": ("text_ngram", "TextNgram", "build_text_ngram"),
    "text_transformer": ("text_transformer", "TextTransformer", "build_text_transformer"),
    "toy_gauss": ("toy_gauss", "ToyGauss", "build_toy_gauss"),
}
DEFAULT_FAMILY = {"image": "image_vae", "text": "text_transformer", "toy": "toy_gauss"}  # where the config names none
COUNTED_FAMILIES = ("text_ngram",)  # fit by counting the meta-train data (fit_counts), not by gradient steps
TEXT_BASELINE = "text_ngram"  # the classical few-shot text baseline (fewgen.text_baseline, bench's ngram method)


def _family(name: str, what: str) -> tuple[Any, str, str]:
    """The module, class name and builder name of family ``name`` (``what``: how errors name it)."""
    if name not in FAMILIES:
        raise ConfigError(f"unknown {what.format(repr(name))}; valid: {', '.join(sorted(FAMILIES))}")
    module, cls, builder = FAMILIES[name]
    return import_module(f"{__name__}.{module}"), cls, builder


def model_for_data(cfg: ModelConfig, modality: str) -> ModelConfig:
    """The model config to build for data of ``modality``: ``cfg``, or with the data's default
    family where the config names the default one (``image_vae``) and the data are not images
    (``--data words`` means text_transformer). Low-dimensional ``toy`` data always get
    ``toy_gauss`` (the image and text families cannot read them), which has no ``model.extra``
    keys: those meant for the family the config names are dropped."""
    if modality == "toy" and cfg.family != "toy_gauss":
        return dataclasses.replace(cfg, family="toy_gauss", extra={})
    if cfg.family == ModelConfig.family and modality in DEFAULT_FAMILY:
        return dataclasses.replace(cfg, family=DEFAULT_FAMILY[modality])
    return cfg


def family_config(cfg: ModelConfig) -> Any:
    """The typed ``model.extra`` of family ``cfg.family`` (its class's ``Extra``), parsed and
    validated (:func:`fewgen.models.base.parse_extra`): a bad family name or ``model.extra``
    value fails here, before any data load, with one line naming the key."""
    module, cls, _ = _family(cfg.family, "model.family {}")
    return parse_extra(getattr(module, cls), cfg)


def weight_average(family: str) -> float:
    """The decay of the weight average family ``family`` was measured to sample better with (its
    class's ``weight_average``; 0 = none): what ``train.ema = "auto"`` becomes."""
    module, cls, _ = _family(family, "model.family {}")
    return float(getattr(module, cls).weight_average)


def build_model(cfg: ModelConfig, data_meta: dict[str, Any]) -> GenerativeModel:
    """Build the generator named by ``cfg.family`` for data described by ``data_meta``
    (``TaskSet.meta`` plus ``example_shape``); ``toy`` data always get ``toy_gauss`` (:func:`model_for_data`)."""
    if data_meta.get("modality") == "toy":
        cfg = model_for_data(cfg, "toy")
    module, _, builder = _family(cfg.family, "model.family {}")
    return getattr(module, builder)(cfg, data_meta)


def model_from_dict(family: str, kwargs: dict[str, Any]) -> GenerativeModel:
    """Rebuild a generator from a checkpoint's stored family and constructor arguments."""
    module, cls, _ = _family(family, "model family {} in checkpoint")
    return getattr(module, cls)(**kwargs)


__all__ = ["COUNTED_FAMILIES", "Context", "DEFAULT_FAMILY", "FAMILIES", "GenerativeModel", "Params", "TEXT_BASELINE",
           "build_model", "call", "context_expand", "context_tasks", "family_config", "model_for_data",
           "model_from_dict", "params_of", "weight_average"]
