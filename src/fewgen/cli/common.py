"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..config import ADAPT_PARAMS, Config, EvalConfig, apply_overrides, finite_number, load_config, replace, validate
from ..errors import ConfigError


def finite_float(text: str) -> float:
    """argparse ``type`` of every float option: a finite number (NaN and infinities refused at
    parse time by the config's own coercion, :func:`fewgen.config.finite_number`)."""
    try:
        return finite_number(text, "the value")
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e).replace("the value ", "", 1)) from None


def add_overwrite_arg(p: argparse.ArgumentParser, replaces: str = "replaces them") -> None:
    """``--overwrite``: the one way past :func:`fewgen.cli.paths.out_folder`'s refusal of an
    output folder that already holds something (``replaces`` says what happens to it)."""
    p.add_argument("--overwrite", action="store_true",
                   help=f"write into --out even though it already holds a checkpoint or other files ({replaces})")


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.toml", help="a TOML preset (keys mirror fewgen.config)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")


def base_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config) if getattr(args, "config", None) else Config()
    return apply_overrides(cfg, getattr(args, "set", []) or [])


def with_data(cfg: Config, spec: str | None) -> Config:
    return replace(cfg, data={"spec": spec}) if spec else cfg


def write_json(path: str | Path, obj: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")
    return path


def add_diffusion_arguments(p: argparse.ArgumentParser) -> None:
    """The diffusion sampler's options (``eval.guidance``, ``eval.sample_steps``, ``eval.sampler``)."""
    p.add_argument("--guidance", type=finite_float, default=None,
                   help="classifier-free guidance (0 = unconditional, 1 = conditional, >1 follows the support more; "
                        "default: the checkpoint's eval.guidance for image_diffusion, eval.text_guidance for "
                        "text_transformer)")
    p.add_argument("--sample-steps", type=int, default=None, help="image_diffusion: denoising steps per sample")
    p.add_argument("--sampler", choices=("ddim", "ddpm"), default=None,
                   help="image_diffusion: ddim (deterministic) or ddpm (stochastic)")
    p.add_argument("--strength", type=finite_float, default=None,
                   help="image_diffusion: 1 = the model's own samples, from noise (default); below 1 = variations "
                        "of a support shot noised to t = strength and denoised given the support (SDEdit)")


def diffusion_eval_config(cfg: Config, args: argparse.Namespace, latent: str | None = None) -> EvalConfig:
    """``cfg.eval`` with the sampler options given on the command line, validated (one-line errors)."""
    changes = {k: v for k, v in (("guidance", args.guidance), ("sample_steps", args.sample_steps),
                                 ("sampler", args.sampler), ("strength", args.strength), ("latent", latent))
               if v is not None}
    return validate(replace(cfg, eval=changes)).eval


def text_guidance_arg(model: Any, ecfg: EvalConfig, args: argparse.Namespace) -> float:
    """A text sampler's guidance: ``--guidance`` when given (a family that has none refuses it
    when sampling), else the checkpoint's ``eval.text_guidance`` where the family has guidance."""
    from ..sample import text_guidance

    given = getattr(args, "guidance", None)
    return text_guidance(model, ecfg) if given is None else given


def add_adapt_args(p: argparse.ArgumentParser) -> None:
    """Test-time fine-tuning options (default: the checkpoint's meta-trained ones)."""
    p.add_argument("--adapt-params", choices=ADAPT_PARAMS, default=None,
                   help="what fine-tuning changes (default: the checkpoint's train.adapt_params)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a train.* fine-tuning key of the checkpoint, e.g. --set train.inner_select=heldout")


def adapt_train_config(cfg: Config, args: argparse.Namespace):
    """The checkpoint's training config with the test-time fine-tuning overrides of ``args``."""
    from ..errors import ConfigError

    overrides = list(getattr(args, "set", []) or [])
    bad = [o for o in overrides if not o.strip().startswith("train.")]
    if bad:
        raise ConfigError(f"--set {bad[0]}: only train.* keys (the fine-tuning options) can change at test time")
    if getattr(args, "adapt_params", None):
        overrides.append(f"train.adapt_params={args.adapt_params}")
    return apply_overrides(cfg, overrides).train
