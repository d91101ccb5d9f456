"""The zoo: pretrained meta-generators shipped inside the package, ready to adapt and sample.

Each zoo model is a normal checkpoint folder beside this file (``config.json``,
``model.safetensors`` in float16 where held-out quality is unchanged, hash-checked on load like
every checkpoint) plus its model card ``card.md``: what it is, the data and its licence, the
budget, the command that trained it and its held-out figures with the commands that measured
them. A zoo name works wherever a checkpoint folder does (``fewgen sample omniglot-diffusion
...``, ``fewgen.load("words-transformer")``): :func:`resolve` maps names to folders. Adding a
model is adding a folder.

:func:`fewgen.zoo.build.build` re-trains a zoo model from the config its checkpoint stores (a
fixed number of steps, one thread, the same seed: bit for bit on CPU) and
:func:`fewgen.zoo.build.export` turns a training run into a zoo folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ZOO_DIR = Path(__file__).resolve().parent
CARD = "card.md"
WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry as ``fewgen zoo list`` shows it."""

    name: str
    path: Path
    summary: str  # the first sentence of the card's first paragraph
    megabytes: float


def names(root: Path | None = None) -> list[str]:
    """The zoo models present (folders with a checkpoint and a card), sorted."""
    root = root or ZOO_DIR
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file() and (p / CARD).is_file())


def resolve(name_or_path: str | Path, root: Path | None = None) -> Path:
    """A checkpoint argument as a folder: an existing path as it is, else a zoo model's folder
    when it names one, else the path unchanged (the loader reports it missing)."""
    path = Path(name_or_path)
    if path.exists() or str(name_or_path) not in names(root):
        return path
    return (root or ZOO_DIR) / str(name_or_path)


def entries(root: Path | None = None) -> list[ZooModel]:
    """Every zoo model with its card's summary and its size on disk."""
    root = root or ZOO_DIR
    out = []
    for name in names(root):
        folder = root / name
        summary = first_sentence(card(name, root))
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 2**20
        out.append(ZooModel(name, folder, summary, size))
    return out


def first_sentence(markdown: str) -> str:
    """The first sentence of a card's first paragraph of prose (headings, code, tables skipped)."""
    paragraph: list[str] = []
    for line in (ln.strip() for ln in markdown.splitlines()):
        if line and not line.startswith(("#", "|", "!", "```", "-")):
            paragraph.append(line)
        elif paragraph:
            break
    text = " ".join(paragraph)
    return text.split(": ")[0].split(". ")[0].rstrip(".")


def card(name: str, root: Path | None = None) -> str:
    """The model card (markdown) of zoo model ``name``; a FewgenError naming the zoo if unknown."""
    from ..errors import FewgenError

    root = root or ZOO_DIR
    if name not in names(root):
        raise FewgenError(f"'{name}' is not a zoo model; the zoo has: {', '.join(names(root)) or 'nothing'}")
    return (root / name / CARD).read_text(encoding="utf-8")
