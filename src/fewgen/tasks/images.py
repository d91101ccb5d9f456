"""Image task sources: folders, Omniglot (download or local archives), embedded font glyphs.

Every image becomes a ``(1, S, S)`` float tensor with ink = 1: converted to grayscale (alpha
composited on white), inverted when the background is light, resized with antialiasing and,
by default, binarised at 0.5. A ``folder:`` that holds colour images is read in colour instead:
``(3, S, S)`` with ink = 1 - RGB (white paper = 0, the colours kept; never binarised), the same
convention as the ``icons`` source.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import unicodedata
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..config import DataConfig
from ..digest import file_digest
from ..errors import DataError
from .base import TaskSet
from .source import user_path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
Image.MAX_IMAGE_PIXELS = 64_000_000  # decompression-bomb limit: larger images are refused


def cache_dir(cfg: DataConfig) -> Path:
    """The folder for downloads and prepared data."""
    return Path(cfg.cache_dir or os.environ.get("FEWGEN_CACHE") or Path.home() / ".cache" / "fewgen")


# ----------------------------------------------------------------------------- one image

DEEP_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # grey modes of more than 8 bits


def _eight_bit(img: Image.Image) -> Image.Image:
    """A 16/32-bit integer or float grey image -> 8-bit "L", scaled to 0..255 by the image's own
    range (a float image in [0, 1] keeps its scale), never wrapping around in uint8."""
    a = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0).clip(0, None)
    top = float(a.max()) if a.size else 0.0
    a = a / (1.0 if img.mode == "F" and top <= 1.0 else max(top, 1.0))
    return Image.fromarray((a.clip(0, 1) * 255).astype(np.uint8), "L")


def _resample(img: Image.Image, size: int) -> Image.Resampling:
    """Box filter when shrinking (antialiased), bilinear when growing."""
    return Image.Resampling.BOX if min(img.size) >= size else Image.Resampling.BILINEAR


def _on_white(img: Image.Image) -> Image.Image:
    """An image -> RGB, transparency composited on white."""
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    if img.mode in DEEP_GREY:
        return _eight_bit(img).convert("RGB")
    return img.convert("RGB")


def is_colour(img: Image.Image, tolerance: int = 16) -> bool:
    """Whether an image has colour: some pixel's channels differ by more than ``tolerance`` of
    255 (a grey JPEG's chroma noise stays below it), judged on a 64-pixel thumbnail."""
    if img.mode in ("1", "L", "LA", "La") + DEEP_GREY:
        return False
    small = _on_white(img).resize((64, 64), Image.Resampling.BOX)
    a = np.asarray(small, dtype=np.int16)
    return bool((a.max(-1) - a.min(-1)).max() > tolerance)


def to_array(img: Image.Image, size: int, binarize: bool, channels: int = 1) -> np.ndarray:
    """A PIL image of any mode -> float32 ``(channels, size, size)`` with ink = 1: grey (below),
    or with ``channels`` = 3 colour, ``1 - RGB`` on white (never binarised)."""
    if channels == 3:
        rgb = _on_white(img)
        a = np.asarray(rgb.resize((size, size), _resample(rgb, size)), dtype=np.float32) / 255.0
        return (1.0 - a).transpose(2, 0, 1).copy()
    if img.mode in DEEP_GREY:
        img = _eight_bit(img)
    elif img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        img = _on_white(img).convert("L")
    elif img.mode in ("L", "1", "P", "RGB", "RGBX", "CMYK", "YCbCr", "HSV"):
        img = img.convert("L")
    else:  # e.g. LAB, or a mode a newer Pillow adds: through RGB when Pillow can
        img = img.convert("RGB").convert("L")
    a = np.asarray(img.resize((size, size), _resample(img, size)), dtype=np.float32) / 255.0
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if border.mean() > 0.5:  # dark ink on a light background
        a = 1.0 - a
    if binarize:
        a = (a > 0.5).astype(np.float32)
    return a[None]


def read_image(data: bytes | Path, size: int, binarize: bool, name: str, channels: int = 1) -> np.ndarray:
    """Decode one image file (bytes or path) into ``(channels, size, size)`` (:func:`to_array`);
    any failure raises DataError naming it.

    Images over ``Image.MAX_IMAGE_PIXELS`` pixels are refused before they are decoded (Pillow
    itself only warns up to twice that limit), so a decompression bomb cannot exhaust memory.
    """
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            # Pillow's own warnings (a bomb is refused below; "corrupt EXIF" and the like) would
            # reach the user without the file's name: the file is judged by what decodes.
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
                w, h = img.size
                if limit and w * h > limit:
                    raise Image.DecompressionBombError()
                if w < 1 or h < 1:
                    raise ValueError("empty image")
                img.load()
                return to_array(img, size, binarize, channels)
    except Image.DecompressionBombError:
        raise DataError(f"{name}: image is too large (over the limit of {limit} pixels; "
                        "a decompression bomb?)") from None
    except MemoryError:
        raise DataError(f"{name}: image is too large to decode (out of memory)") from None
    except Exception as e:  # noqa: BLE001 - Pillow raises many types on malformed files
        raise DataError(f"{name}: not a readable image ({type(e).__name__})") from None


def _collect(items: Iterable[tuple[str, str, str, bytes | Path]], cfg: DataConfig, source: str,
             channels: int = 1) -> TaskSet:
    """items: (task, group, file name, bytes-or-path) -> TaskSet of ``channels``-channel images;
    bad files skipped or fatal."""
    per_task: dict[str, list[np.ndarray]] = {}
    groups: dict[str, str] = {}
    skipped: list[str] = []
    for task, group, fname, data in items:
        try:
            arr = read_image(data, cfg.image_size, cfg.binarize, fname, channels)
        except DataError:
            if cfg.strict:
                raise
            skipped.append(fname)
            continue
        per_task.setdefault(task, []).append(arr)
        groups[task] = group
    if skipped:
        warnings.warn(f"{source}: skipped {len(skipped)} unreadable image file(s), e.g. {skipped[0]} "
                      "(--set data.strict=true makes them errors)", stacklevel=2)
    if not per_task:
        raise DataError(f"{source}: no readable images found")
    names = sorted(per_task)
    if cfg.max_examples_per_task:
        per_task = {n: v[: cfg.max_examples_per_task] for n, v in per_task.items()}
    return TaskSet.from_lists(names, [groups[n] for n in names],
                              [torch.from_numpy(np.stack(per_task[n])) for n in names], "image", source)


# ----------------------------------------------------------------------------- folder:PATH

def load_folder(arg: str, cfg: DataConfig) -> TaskSet:
    """``PATH/<task>/*.png|jpg|...``: each sub-folder is a task (and its own split group)."""
    if not arg:
        raise DataError("folder: needs a path, e.g. folder:./my_images")
    root = user_path(arg, "folder")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    try:
        subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        items, empty = [], []
        for d in subdirs:
            files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                empty.append(d)
            items += [(d.name, d.name, str(f), f) for f in files]
    except OSError as e:
        raise DataError(f"{e.filename or root}: cannot read the folder ({e.strerror})") from None
    if not subdirs:
        raise DataError(f"{root}: no task sub-folders (expected {root}/<task>/<images>)")
    if empty and len(empty) == len(subdirs):
        raise DataError(f"{root}: every task folder is empty (no {'/'.join(sorted(IMAGE_SUFFIXES))} files), "
                        f"e.g. {empty[0]}")
    if empty:
        warnings.warn(f"{root}: skipped {len(empty)} empty task folder(s) (no image files), e.g. {empty[0]}",
                      stacklevel=2)
    return _collect(items, cfg, str(root), folder_channels([f for *_, f in items]))


def folder_channels(files: Sequence[Path]) -> int:
    """3 when any of the image files has colour (:func:`is_colour`), else 1: a folder of colour
    images is read in colour. Unreadable files count as grey (reading them later says why)."""
    for f in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(f) as img:
                    w, h = img.size
                    if Image.MAX_IMAGE_PIXELS and w * h > Image.MAX_IMAGE_PIXELS:
                        continue
                    if is_colour(img):
                        return 3
        except Exception:  # noqa: BLE001 - judged (and named) when the file is read
            continue
    return 1


# ----------------------------------------------------------------------------- omniglot

# The official archives of Lake et al., "Human-level concept learning through probabilistic
# program induction" (Science 2015), with the MD5s that torchvision publishes for them.
OMNIGLOT_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
OMNIGLOT_MD5 = {
    "images_background.zip": "68d2efa1b9178cc56df9314c21c6e718",
    "images_evaluation.zip": "6b91aef0f799c5bb55b94e3f2daec811",
}


def md5_of(path: Path) -> str:
    """The MD5 published for the Omniglot archives."""
    return file_digest(path, "md5")


def download_omniglot(dest: Path, url: str = OMNIGLOT_URL) -> list[Path]:
    """Download and checksum-verify the two official Omniglot archives into ``dest``."""
    import http.client  # here: reading images needs no network modules
    import urllib.request

    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for name, md5 in OMNIGLOT_MD5.items():
        path = dest / name
        if not (path.exists() and md5_of(path) == md5):
            tmp = path.with_suffix(".part")
            try:
                with urllib.request.urlopen(url + name, timeout=60) as r, open(tmp, "wb") as f:
                    while block := r.read(1 << 20):
                        f.write(block)
            except (OSError, http.client.HTTPException, ValueError) as e:
                tmp.unlink(missing_ok=True)
                raise DataError(
                    f"could not download {url + name} ({e}); download images_background.zip and "
                    f"images_evaluation.zip by hand into {dest} (or use omniglot:PATH)") from None
            if (got := md5_of(tmp)) != md5:
                tmp.unlink(missing_ok=True)
                raise DataError(f"{url + name}: checksum mismatch (MD5 {got}, expected {md5}): the download is "
                                f"corrupt or not the official archive; place the official {name} in {dest} "
                                "by hand (or use omniglot:PATH)")
            os.replace(tmp, path)
        out.append(path)
    return out


MAX_MEMBER_BYTES = 64 << 20  # an archive member larger than this (uncompressed) is refused


def _safe_member(name: str) -> bool:
    """Refuse absolute paths (POSIX, Windows drive or UNC) and path traversal inside archives."""
    norm = name.replace("\\", "/")
    parts = norm.split("/")
    return not (norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or ".." in parts or "\0" in name)


def _omniglot_items(root: Path) -> Iterable[tuple[str, str, str, bytes | Path]]:
    """Yield (alphabet/character, alphabet, file, data) from archives and unzipped folders.

    The official layout is ``images_<set>/<Alphabet>/<characterNN>/<drawer>.png``. The same file
    in two archives (the "small" background sets overlap) is read once.
    """
    seen: set[tuple[str, str, str]] = set()
    for z in sorted(root.glob("*.zip")):
        try:
            with zipfile.ZipFile(z) as zf:
                infos = zf.infolist()
                # The whole archive is refused if any member could escape a folder when extracted.
                for info in infos:
                    if not _safe_member(info.filename):
                        raise DataError(f"{z}: refused: archive member '{info.filename}' has an unsafe path "
                                        "(absolute or with '..')")
                for info in infos:
                    parts = info.filename.split("/")
                    if info.is_dir() or len(parts) != 4 or not parts[3].lower().endswith(".png"):
                        continue
                    if info.file_size > MAX_MEMBER_BYTES:
                        raise DataError(f"{z}: refused: archive member '{info.filename}' is {info.file_size} "
                                        f"bytes uncompressed (limit {MAX_MEMBER_BYTES})")
                    key = (parts[1], parts[2], parts[3])
                    if key not in seen:
                        seen.add(key)
                        yield f"{parts[1]}/{parts[2]}", parts[1], f"{z}:{info.filename}", zf.read(info)
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise DataError(f"{z}: not a valid zip archive ({e}; corrupt or truncated download?)") from None
        except OSError as e:
            raise DataError(f"{z}: cannot read the archive ({e.strerror or e})") from None
    for top in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("images_")):
        for f in sorted(top.glob("*/*/*.png")):
            key = (f.parent.parent.name, f.parent.name, f.name)
            if key not in seen:
                seen.add(key)
                yield f"{key[0]}/{key[1]}", key[0], str(f), f


def load_omniglot(arg: str, cfg: DataConfig) -> TaskSet:
    """Omniglot: a character is a task, its drawers' images are examples, alphabets are groups."""
    if arg:
        root = user_path(arg, "omniglot")
        if not root.is_dir():
            raise DataError(f"{root}: not a folder (expected the Omniglot archives or their unzipped folders)")
    else:
        root = cache_dir(cfg) / "omniglot"
        download_omniglot(root)
    items = list(_omniglot_items(root))
    if not items:
        raise DataError(f"{root}: no Omniglot archives (images_*.zip) or folders (images_*/) found")
    return _collect(items, cfg, f"omniglot:{root}")


# ----------------------------------------------------------------------------- glyphs

GLYPH_FONTS = [  # matplotlib ships these; the TeX (cm*), size-variant and fallback fonts are left out
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
]
GLYPH_MIN_FONTS = 4  # a character must be drawn by at least this many fonts to be a task
GLYPH_EXAMPLES = 24  # about this many examples per task (fonts x jittered copies)
GLYPH_CATEGORIES = ("Lu", "Ll", "Lo", "Lt", "Nd", "No", "So", "Sm")
_RENDER = 64  # glyphs are rendered at this size, jittered, then resized


def glyph_group(ch: str) -> str:
    """The split group of a character: the first word of its Unicode name (its script, e.g.
    LATIN, GREEK, CYRILLIC, or a symbol block word)."""
    return unicodedata.name(ch, "UNKNOWN").split()[0]


def _render(font, ch: str) -> np.ndarray | None:
    from PIL import ImageDraw

    img = Image.new("L", (_RENDER, _RENDER), 0)
    draw = ImageDraw.Draw(img)
    box = draw.textbbox((0, 0), ch, font=font)
    w, h = box[2] - box[0], box[3] - box[1]
    if w <= 0 or h <= 0:
        return None
    draw.text(((_RENDER - w) / 2 - box[0], (_RENDER - h) / 2 - box[1]), ch, fill=255, font=font)
    return np.asarray(img, dtype=np.float32) / 255.0


def _jitter(base: torch.Tensor, reps: int, size: int, binarize: bool, g: torch.Generator) -> torch.Tensor:
    """Random small affine jitter of (B,1,R,R) renders, vectorised: -> (B*reps,1,size,size)."""
    x = base.repeat_interleave(reps, 0)
    n = x.shape[0]
    ang = (torch.rand(n, generator=g) - 0.5) * math.radians(20)
    scale = 1.0 + (torch.rand(n, generator=g) - 0.5) * 0.25
    shear = (torch.rand(n, generator=g) - 0.5) * 0.3
    shift = (torch.rand(n, 2, generator=g) - 0.5) * 0.15
    cos, sin = torch.cos(ang) * scale, torch.sin(ang) * scale
    theta = torch.stack([torch.stack([cos, -sin + shear, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False)
    # Glyphs fill about 70% of the frame, like Omniglot strokes: crop the margin, then resize.
    x = F.interpolate(x[..., 8:-8, 8:-8], size=(size, size), mode="area")
    x = x / x.flatten(1).amax(1).clamp_min(1e-6)[:, None, None, None]
    return (x > 0.5).float() if binarize else x


def build_glyphs(cfg: DataConfig, fonts: list[str] | None = None, max_chars: int = 0) -> TaskSet:
    """Render the glyph tasks (no cache): a character is a task; its examples are its renders in
    every font that has it, each with small random affine jitter. Blank renders, characters
    without a glyph (no placeholder boxes: only each font's own character map is used) and
    characters that render identically to an earlier one (Latin A / Greek Alpha) are dropped."""
    import matplotlib
    from matplotlib.ft2font import FT2Font
    from PIL import ImageFont

    fdir = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    fonts = fonts or GLYPH_FONTS
    coverage: dict[str, list[int]] = {}
    pil_fonts = []
    for fi, name in enumerate(fonts):
        cmap = FT2Font(str(fdir / name)).get_charmap()
        pil_fonts.append(ImageFont.truetype(str(fdir / name), 44))
        for cp, gid in cmap.items():
            if gid == 0 or cp > 0x2FFFF:
                continue
            ch = chr(cp)
            if unicodedata.category(ch) in GLYPH_CATEGORIES:
                coverage.setdefault(ch, []).append(fi)
    chars = sorted(ch for ch, fs in coverage.items() if len(fs) >= GLYPH_MIN_FONTS)
    if max_chars:
        chars = chars[:max_chars]
    g = torch.Generator().manual_seed(1234)
    names, groups, examples, seen = [], [], [], set()
    for ch in chars:
        renders = [r for fi in coverage[ch] if (r := _render(pil_fonts[fi], ch)) is not None and r.sum() > 20]
        if len(renders) < GLYPH_MIN_FONTS:
            continue
        base = torch.from_numpy(np.stack(renders))[:, None]
        key = hashlib.md5(_jitter(base[:1], 1, 16, True, torch.Generator().manual_seed(0)).numpy().tobytes()).hexdigest()
        if key in seen:  # renders like an earlier character (e.g. Cyrillic A): not a distinct task
            continue
        seen.add(key)
        reps = max(2, math.ceil(GLYPH_EXAMPLES / len(renders)))
        x = _jitter(base, reps, cfg.image_size, cfg.binarize, g)
        x = x[x.flatten(1).sum(1) >= 3]  # drop renders that came out blank at this size
        if len(x) < 2 * GLYPH_MIN_FONTS:
            continue
        names.append(f"U+{ord(ch):04X} {ch}")
        groups.append(glyph_group(ch))
        examples.append(x)
    return TaskSet.from_lists(names, groups, examples, "image", "glyphs")


def load_glyphs(arg: str, cfg: DataConfig) -> TaskSet:
    """The embedded default: glyph tasks, rendered once and cached (safetensors) per image config."""
    from safetensors.torch import load_file, save_file

    if arg:
        raise DataError(f"glyphs takes no argument, got 'glyphs:{arg}'")
    path = cache_dir(cfg) / f"glyphs-v1-s{cfg.image_size}-b{int(cfg.binarize)}.safetensors"
    if path.exists():
        try:
            t = load_file(str(path))
            import json

            meta = json.loads(bytes(t["meta"].tolist()).decode("utf-8"))
            ts = TaskSet(meta["names"], meta["groups"], t["data"], t["offsets"], "image", "glyphs")
            return _limit(ts, cfg)
        except Exception:  # a stale or damaged cache is rebuilt, never trusted
            path.unlink(missing_ok=True)
    ts = build_glyphs(cfg)
    import json

    meta = torch.tensor(list(json.dumps({"names": ts.names, "groups": ts.groups}).encode("utf-8")), dtype=torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"data": ts.data.contiguous(), "offsets": ts.offsets, "meta": meta}, str(tmp))
    os.replace(tmp, path)
    return _limit(ts, cfg)


def _limit(ts: TaskSet, cfg: DataConfig) -> TaskSet:
    if not cfg.max_examples_per_task:
        return ts
    return TaskSet.from_lists(ts.names, ts.groups, [ts.examples(i)[: cfg.max_examples_per_task] for i in range(len(ts))],
                              ts.modality, ts.source)
