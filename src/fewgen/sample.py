"""Adapted generator -> samples; reading a user's support files.

Images: ``sample_images`` gives a (T, n, C, S, S) tensor and ``write_sample_grid`` a PNG with the
support in the first row and the samples below. Text: ``sample_text`` gives T lists of n
strings (always valid UTF-8) and ``write_lines`` writes one a line. Everything is seeded.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence, TextIO

import torch
from torch import Tensor

from .adapt import Adapted, adapted_sample
from .config import DataConfig, EvalConfig
from .errors import DataError
from .pictures import save_grid, support_and_samples
from .tasks.images import IMAGE_SUFFIXES, read_image


def read_support_images(paths: Sequence[str | Path], cfg: DataConfig) -> Tensor:
    """Image files and/or folders of images -> (K, C, S, S), prepared like the training data."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"{p}: folder has no image files")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    import numpy as np

    return torch.from_numpy(np.stack([read_image(f, cfg.image_size, cfg.binarize, str(f)) for f in files]))


def read_support(paths: Sequence[str | Path], modality: str, cfg: DataConfig, max_len: int = 0) -> Tensor:
    """A user's support files for a model of ``modality`` -> (K, *X), prepared like its data.

    Images: image files and/or folders of them. Text: ``.txt`` files (or folders of them), one
    example per line, byte-encoded to ``max_len``. Toy: text files of numbers, one example per row.
    """
    if modality == "image":
        return read_support_images(paths, cfg)
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.is_file() and f.suffix == ".txt")
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    if not files:
        raise DataError(f"{', '.join(map(str, paths))}: no .txt support files")
    if modality == "text":
        return read_support_text(files, max_len)
    if modality == "toy":
        import numpy as np

        try:
            rows = [np.atleast_2d(np.loadtxt(f, dtype=np.float32, delimiter=None, ndmin=2)) for f in files]
        except ValueError as e:
            raise DataError(f"support: not a table of numbers ({e})") from None
        return torch.from_numpy(np.concatenate(rows))
    raise DataError(f"reading support files of '{modality}' models is not supported")


def read_support_text(files: Sequence[Path], max_len: int) -> Tensor:
    """Support lines of ``.txt`` files -> (K, max_len) ids. A line longer than the model's
    ``max_len - 1`` bytes is cut between characters, with one warning naming the first such
    file and line (and how many more there were)."""
    from .tasks.text import encode_batch, read_numbered_lines, truncate_utf8

    lines, cut = [], []
    for f in files:
        for number, text in read_numbered_lines(f):
            short = truncate_utf8(text, max_len - 1)
            if short != text:
                cut.append(f"{f}:{number}")
            lines.append(short)
    if cut:
        more = f" (and {len(cut) - 1} more line(s))" if len(cut) > 1 else ""
        warnings.warn(f"support line {cut[0]} is longer than the model's {max_len - 1} bytes; truncated{more}",
                      stacklevel=2)
    try:
        return encode_batch(lines, max_len)
    except ValueError as e:
        raise DataError(f"support: {e}") from None


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
