"""Adapted generator -> samples (a user's support files are read by :mod:`fewgen.support`).

Images: ``sample_images`` gives a (T, n, C, S, S) tensor and ``write_sample_grid`` a PNG with the
support in the first row and the samples below. Text: ``sample_text`` gives T lists of n
strings (always valid UTF-8) and ``write_lines`` writes one a line. Everything is seeded.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any, Sequence, TextIO

import torch
from torch import Tensor

from .adaptation import Adapted, adapted_sample
from .config import EvalConfig
from .models import GenerativeModel
from .pictures import save_grid, support_and_samples


def image_sample_options(model: GenerativeModel, ecfg: EvalConfig) -> dict[str, Any]:
    """The keyword arguments of an image model's ``sample`` that the eval config chooses: the
    diffusion model's ``eval.guidance``, ``eval.sample_steps`` and ``eval.sampler``, the VAE's
    latent sampler ``eval.latent``."""
    if model.family == "image_diffusion":
        return {"guidance": ecfg.guidance, "steps": ecfg.sample_steps, "sampler": ecfg.sampler,
                "strength": ecfg.strength}
    return {"latent": ecfg.latent}


def sample_images(adapted: Adapted, n: int, seed: int = 0, latent: str | None = None,
                  ecfg: EvalConfig | None = None) -> Tensor:
    """n samples per adapted task, seeded: (T, n, C, S, S) in [0, 1], drawn as ``ecfg`` (default
    :class:`EvalConfig`) says (:func:`image_sample_options`). ``latent`` overrides its VAE latent
    sampler: ``fusion`` (blends of the support's own posteriors: samples follow the support) or
    ``prior`` (the model's p(z | support), the distribution its NLL scores); see
    :meth:`fewgen.models.image_vae.ImageVAE.sample`."""
    ecfg = ecfg or EvalConfig()
    if latent is not None:
        ecfg = dataclasses.replace(ecfg, latent=latent)
    return adapted_sample(adapted, n, torch.Generator().manual_seed(seed), **image_sample_options(adapted.model, ecfg))


def write_sample_grid(path: str | Path, support: Tensor, samples: Tensor) -> Path:
    """A PNG: the K support images in the first row, the samples below."""
    return save_grid(path, support_and_samples(support, samples), gap_after=[0])


def _takes_guidance(model: GenerativeModel) -> bool:
    """Whether a text model's ``sample`` takes a ``guidance`` (``text_transformer``)."""
    return "guidance" in inspect.signature(model.sample).parameters


def text_guidance(model: GenerativeModel, ecfg: EvalConfig) -> float:
    """The guidance a text model samples with by default: ``eval.text_guidance`` where its
    ``sample`` takes one (``text_transformer``), else 1 (its own distribution)."""
    return ecfg.text_guidance if _takes_guidance(model) else 1.0


def sample_text(adapted: Adapted, n: int, seed: int = 0, temperature: float = 1.0,
                top_p: float = 1.0, guidance: float = 1.0) -> list[list[str]]:
    """n strings per adapted task, seeded: T lists of n strings, each valid UTF-8 (the text
    model samples under a UTF-8 grammar; ``temperature`` 0 is greedy). ``guidance`` != 1 is
    classifier-free guidance toward the support (``text_transformer``; see its ``sample``)."""
    from .errors import ConfigError
    from .models.bytes import decode_batch

    options: dict[str, Any] = {"temperature": temperature, "top_p": top_p}
    if guidance != 1.0:
        if not _takes_guidance(adapted.model):
            raise ConfigError(f"guidance {guidance:g}: {adapted.model.family} samples without guidance (use 1)")
        options["guidance"] = guidance
    ids = adapted_sample(adapted, n, torch.Generator().manual_seed(seed), **options)  # (T, n, L)
    return decode_batch(ids)


def write_lines(out: str | Path | TextIO, lines: Sequence[str]) -> Path | None:
    """One string a line (UTF-8) to a file path, or to an open text stream (returns None)."""
    text = "".join(s + "\n" for s in lines)
    if not isinstance(out, (str, Path)):
        buf = getattr(out, "buffer", None)  # write UTF-8 bytes whatever the stream's own encoding
        out.flush()
        if buf is not None:
            buf.write(text.encode("utf-8"))
            buf.flush()
        else:
            out.write(text)
            out.flush()
        return None
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
