"""Adapted generator -> samples; reading a user's support files.

Images: ``sample_images`` gives a (T, n, C, S, S) tensor and ``write_sample_grid`` a PNG with the
support in the first row and the samples below. Everything is seeded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from .adapt import Adapted, adapted_sample
from .config import DataConfig
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


def sample_images(adapted: Adapted, n: int, seed: int = 0) -> Tensor:
    """n samples per adapted task, seeded: (T, n, C, S, S)."""
    return adapted_sample(adapted, n, torch.Generator().manual_seed(seed))


def write_sample_grid(path: str | Path, support: Tensor, samples: Tensor) -> Path:
    """A PNG: the K support images in the first row, the samples below."""
    return save_grid(path, support_and_samples(support, samples), gap_after=[0])
