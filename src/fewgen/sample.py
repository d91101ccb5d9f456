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


def sample_images(adapted: Adapted, n: int, seed: int = 0, latent: str | None = None,
                  ecfg: EvalConfig | None = None) -> Tensor:
    """n samples per adapted task, seeded: (T, n, C, S, S) in [0, 1], drawn as ``ecfg`` (default
    :class:`EvalConfig`) says (the family's ``sample_options``). ``latent`` overrides its VAE latent
    sampler: ``fusion`` (blends of the support's own posteriors: samples follow the support) or
    ``prior`` (the model's p(z | support), the distribution its NLL scores); see
    :meth:`fewgen.models.image_vae.ImageVAE.sample`."""
    ecfg = ecfg or EvalConfig()
    if latent is not None:
        ecfg = dataclasses.replace(ecfg, latent=latent)
    return adapted_sample(adapted, n, torch.Generator().manual_seed(seed), **adapted.model.sample_options(ecfg))


def write_sample_grid(path: str | Path, support: Tensor, samples: Tensor) -> Path:
    """A PNG: the K support images in the first row, the samples below."""
    return save_grid(path, support_and_samples(support, samples), gap_after=[0])


def _takes_guidance(model: GenerativeModel) -> bool:
    """Whether a text model's ``sample`` takes a ``guidance`` (``text_transformer``)."""
    return "guidance" in inspect.signature(model.sample).parameters


def text_guidance(model: GenerativeModel, ecfg: EvalConfig) -> float:
    """The guidance toward the support a text model samples with as ``ecfg`` configures it (the
    family's ``sample_options``, e.g. ``eval.text_guidance``), 1 (its own distribution) where it has none."""
    return float(model.sample_options(ecfg).get("guidance", 1.0))


def sample_text(adapted: Adapted, n: int, seed: int = 0, temperature: float = 1.0,
                top_p: float = 1.0, guidance: float | None = None) -> list[list[str]]:
    """n strings per adapted task, seeded: T lists of n strings, each valid UTF-8 (the text
    model samples under a UTF-8 grammar; ``temperature`` 0 is greedy). ``guidance`` is
    classifier-free guidance toward the support where the family has it (``text_transformer``;
    see its ``sample``); None is the family's default (:func:`text_guidance` of :class:`EvalConfig`),
    a family without guidance refuses any value but 1."""
    from .errors import ConfigError
    from .models.bytes import decode_batch

    options: dict[str, Any] = {"temperature": temperature, "top_p": top_p}
    if guidance is not None and _takes_guidance(adapted.model):
        options["guidance"] = guidance
    elif guidance not in (None, 1.0):
        raise ConfigError(f"guidance {guidance:g}: {adapted.model.family} samples without guidance (use 1)")
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
