"""The zoo's first minute: samples of held-out characters and words from the packaged models.

What ``fewgen demo`` shows before it trains anything: for each zoo model whose data is on the
machine (the embedded glyphs, the ``wordfreq`` lists; Omniglot where its archives are), a few
tasks of the held-out split, their support, and the samples the model draws from it. Seconds
on a CPU: no training, one adaptation pass per task.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import Checkpoint
from ..errors import FewgenError


@dataclass
class TourResult:
    """What one zoo model showed: the file written and what it was."""

    name: str
    path: Path
    tasks: list[str]
    seconds: float


def held_out(ck: Checkpoint, seed: int, count: int) -> list[tuple[str, torch.Tensor]] | None:
    """``count`` seeded (name, examples) tasks of the test split of the checkpoint's data (None
    when its data is not on this machine)."""
    from ..tasks.spec import load_tasks, splits_of

    try:
        test = splits_of(load_tasks(ck.config.data.spec, ck.config.data), ck.config.data)["test"]
    except FewgenError:
        return None
    ids = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:count].tolist()
    return [(test.names[i], test.examples(i)) for i in ids]


def adapted_held_out(ck: Checkpoint, seed: int, count: int, shots: int) -> tuple[list[str], torch.Tensor, Any] | None:
    """``count`` held-out tasks of the checkpoint's data (:func:`held_out`): their names, ``shots``
    seeded support examples each (T, K, *X) and the checkpoint adapted to them (None: no data)."""
    from ..adaptation import adapter_for_checkpoint

    tasks = held_out(ck, seed, count)
    if tasks is None:
        return None
    g = torch.Generator().manual_seed(seed)
    support = torch.stack([ex[torch.randperm(len(ex), generator=g)[:shots]] for _, ex in tasks])
    adapted = adapter_for_checkpoint(ck, seed=seed)(support, torch.ones(support.shape[:2], dtype=torch.bool), 0)
    return [name for name, _ in tasks], support, adapted


def tasks_grid(path: Path, tasks: list[str], support: torch.Tensor, samples: torch.Tensor) -> Path:
    """A picture at ``path``: for each task, a row of its support images (T, K, C, S, S), then a
    row of its samples (T, n, C, S, S)."""
    from ..pictures import save_grid

    rows = [r for t in range(len(tasks)) for r in (support[t], samples[t])]
    labels = [lab for task in tasks for lab in (f"{task.split()[0]} shots", "samples")]
    return save_grid(path, rows, labels=labels, gap_after=list(range(1, len(rows), 2)))


def image_tour(ck: Checkpoint, name: str, out: Path, tasks: list[str], support: torch.Tensor, adapted: Any,
               seed: int = 0, n: int = 12) -> Path:
    """A grid: each held-out character's support images, then ``n`` samples of it."""
    from ..sample import sample_images

    return tasks_grid(out / f"zoo_{name}.png", tasks, support, sample_images(adapted, n, seed, ecfg=ck.config.eval))


def text_tour(ck: Checkpoint, name: str, out: Path, tasks: list[str], support: torch.Tensor, adapted: Any,
              seed: int = 0, n: int = 10) -> Path:
    """A text file: each held-out language's support words, then ``n`` samples."""
    from ..models.bytes import decode_batch
    from ..sample import sample_text, text_guidance

    drawn = sample_text(adapted, n, seed, guidance=text_guidance(ck.model, ck.config.eval))
    lines = [f"{task}\n  support: {' '.join(decode_batch(support[t]))}\n  samples: {' '.join(drawn[t])}\n"
             for t, task in enumerate(tasks)]
    path = out / f"zoo_{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# The tasks and shots each kind of model is shown with: six characters from five shots, four
# languages from ten words.
SHOWN = {"image": (image_tour, 6, 5), "text": (text_tour, 4, 10)}


def tour(out: str | Path, seed: int = 0) -> list[TourResult]:
    """Every zoo model whose data is here: a picture (images) or a text file (text) in ``out``."""
    import time

    from ..checkpoint import load
    from . import names

    results = []
    for name in names():
        t0 = time.time()
        ck = load(name)
        show, count, shots = SHOWN[ck.model.modality]
        got = adapted_held_out(ck, seed, count, shots)
        if got is not None:
            path = show(ck, name, Path(out), *got, seed=seed)
            results.append(TourResult(name, path, got[0], time.time() - t0))
    return results
