"""Adapted generator -> samples (a user's support files are read by :mod:`fewgen.support`).

Images: ``sample_images`` gives a (T, n, C, S, S) tensor and ``write_sample_grid`` a PNG with the
support in the first row and the samples below. Text: ``sample_text`` gives T lists of n
strings (always valid UTF-8) and ``write_lines`` writes one a line. Everything is seeded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, TextIO

import torch
from torch import Tensor

from .adapt import Adapted, adapted_sample
from .config import EvalConfig
from .pictures import save_grid, support_and_samples


def sample_images(adapted: Adapted, n: int, seed: int = 0, latent: str = EvalConfig.latent) -> Tensor:
    """n samples per adapted task, seeded: (T, n, C, S, S). ``latent``: the image model's latent
    sampler, ``fusion`` (blends of the support's own posteriors: samples follow the support) or
    ``prior`` (the model's p(z | support), the distribution its NLL scores); see
    :meth:`fewgen.models.image_vae.ImageVAE.sample`."""
    return adapted_sample(adapted, n, torch.Generator().manual_seed(seed), latent=latent)


def write_sample_grid(path: str | Path, support: Tensor, samples: Tensor) -> Path:
    """A PNG: the K support images in the first row, the samples below."""
    return save_grid(path, support_and_samples(support, samples), gap_after=[0])


def sample_text(adapted: Adapted, n: int, seed: int = 0, temperature: float = 1.0,
                top_p: float = 1.0) -> list[list[str]]:
    """n strings per adapted task, seeded: T lists of n strings, each valid UTF-8 (the text
    model samples under a UTF-8 grammar; ``temperature`` 0 is greedy)."""
    from .tasks.text import decode_batch

    ids = adapted_sample(adapted, n, torch.Generator().manual_seed(seed), temperature=temperature,
                         top_p=top_p)  # (T, n, L)
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
