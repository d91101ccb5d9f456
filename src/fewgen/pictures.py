"""PNG grids of images (support rows, samples, tasks)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw
from torch import Tensor


def image_grid(rows: Sequence[Tensor], scale: int = 3, pad: int = 2, gap_after: Sequence[int] = (),
               labels: Sequence[str] | None = None) -> Image.Image:
    """Rows of images (each (n, C, S, S) in [0, 1], ink = 1) -> one picture, ink drawn dark on
    white. A thicker gap follows the rows listed in ``gap_after``; ``labels`` are drawn left."""
    rows = [r.detach().float().cpu().clamp(0, 1) for r in rows]
    c, s = rows[0].shape[1], rows[0].shape[-1]
    cols = max(len(r) for r in rows)
    label_w = 0 if not labels else 8 + 7 * max(len(t) for t in labels)
    cell = s * scale + pad
    height = len(rows) * cell + pad + 6 * len(gap_after)
    canvas = np.full((height, label_w + cols * cell + pad, 3), 200, dtype=np.uint8)
    y = pad
    for i, r in enumerate(rows):
        for j, img in enumerate(r):
            a = 1.0 - img.numpy()  # ink dark on white paper
            a = np.repeat(a, 3, 0) if c == 1 else a
            a = np.kron(a.transpose(1, 2, 0), np.ones((scale, scale, 1)))
            x = label_w + pad + j * cell
            canvas[y : y + s * scale, x : x + s * scale] = (a * 255).astype(np.uint8)
        y += cell + (6 if i in gap_after else 0)
    pic = Image.fromarray(canvas)
    if labels:
        draw = ImageDraw.Draw(pic)
        y = pad
        for i, t in enumerate(labels):
            draw.text((4, y + s * scale // 2 - 5), t, fill=(0, 0, 0))
            y += cell + (6 if i in gap_after else 0)
    return pic


def save_grid(path: str | Path, rows: Sequence[Tensor], **kwargs) -> Path:
    """Write :func:`image_grid` to ``path`` (PNG); creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(rows, **kwargs).save(path)
    return path


def support_and_samples(support: Tensor, samples: Tensor, per_row: int = 16) -> list[Tensor]:
    """Rows for a sample picture: the support first, then the samples ``per_row`` at a time."""
    rows = [support]
    rows += [samples[i : i + per_row] for i in range(0, len(samples), per_row)]
    return rows


def tasks_picture(path: str | Path, examples: Sequence[Tensor], names: Sequence[str], per_task: int = 12) -> Path:
    """One row per task with up to ``per_task`` of its examples."""
    return save_grid(path, [e[:per_task] for e in examples], labels=[n.encode("ascii", "replace").decode()[:18] for n in names])


