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


def image_tour(ck: Checkpoint, name: str, out: Path, seed: int = 0, count: int = 6, shots: int = 5,
               n: int = 12) -> TourResult | None:
    """A grid of ``count`` held-out characters: each one's ``shots`` support images, then ``n`` samples."""
    import time

    from ..pictures import save_grid
    from ..sample import sample_images

    t0 = time.time()
    got = adapted_held_out(ck, seed, count, shots)
    if got is None:
        return None
    tasks, support, a = got
    samples = sample_images(a, n, seed, ecfg=ck.config.eval)
    rows = [r for t in range(len(tasks)) for r in (support[t], samples[t])]
    labels = [lab for task in tasks for lab in (f"{task.split()[0]} shots", "samples")]
    path = save_grid(out / f"zoo_{name}.png", rows, labels=labels, gap_after=list(range(1, len(rows), 2)))
    return TourResult(name, path, tasks, time.time() - t0)


def text_tour(ck: Checkpoint, name: str, out: Path, seed: int = 0, count: int = 4, shots: int = 10,
              n: int = 10) -> TourResult | None:
    """A text file: for ``count`` held-out languages, ``shots`` support words and ``n`` samples."""
    import time

    from ..models.bytes import decode_batch
    from ..sample import sample_text, text_guidance

    t0 = time.time()
    got = adapted_held_out(ck, seed, count, shots)
    if got is None:
        return None
    tasks, support, a = got
    drawn = sample_text(a, n, seed, guidance=text_guidance(ck.model, ck.config.eval))
    lines = [f"{task}\n  support: {' '.join(decode_batch(support[t]))}\n  samples: {' '.join(drawn[t])}\n"
             for t, task in enumerate(tasks)]
    path = out / f"zoo_{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return TourResult(name, path, tasks, time.time() - t0)


def tour(out: str | Path, seed: int = 0) -> list[TourResult]:
    """Every zoo model whose data is here: a picture (images) or a text file (text) in ``out``."""
    from ..checkpoint import load
    from . import names

    results = []
    for name in names():
        ck = load(name)
        r = (image_tour if ck.model.modality == "image" else text_tour)(ck, name, Path(out), seed)
        if r is not None:
            results.append(r)
    return results
