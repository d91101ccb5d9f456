"""Icon tasks: freedesktop icon themes, the same concept drawn in colour by many artists.

A Linux icon theme (``/usr/share/icons/<Theme>/index.theme`` and its folders) draws icons under
the shared freedesktop names (``folder``, ``user-trash``, ``printer``, ``edit-copy``, ...), so
the themes Debian packages are an offline, RGB Omniglot with one artist per theme.

Spec (``icons[:ITEM,ITEM,...]``; the items in any order):

- ``icons``: the themes of :data:`THEME_PACKAGES` in ``/usr/share/icons`` (what ``make install``
  and ``.ci/run`` install with apt-get);
- ``THEME`` items (``icons:Tango,gnome,oxygen``): only these themes;
- a ``PATH`` item (any item with a ``/``, or ``.``/``~``: ``icons:/usr/share/icons``,
  ``icons:./themes,Tango``): the themes in that folder (every sub-folder with an
  ``index.theme``, or the ``THEME`` items given with it);
- ``by=name`` (default): a task is an icon name; its examples are its distinct drawings, one per
  theme that draws it, at least ``data.min_examples`` (5) of them: on the 12 default themes at
  28 px, 597 names (4129 drawings; 198 names have 8 or more). ``by=theme``: a task is a theme
  (its style), its examples are its icons of those same names: "more icons in this style";
- ``split=name`` (default): the splits hold out icon names (concepts). A split group is the set of
  names that share a drawing in some theme (``gtk-stop``, ``process-stop``: synonyms) and their
  mirrored variants (``edit-undo-rtl``), so a held-out name is never a synonym of a training one;
  related concepts (``folder-open``, ``folder``) may fall in different splits.
- ``split=theme`` (``by=name`` only) holds out whole themes (artists): the themes are split by
  ``data.split_fractions`` (seeded by ``data.split_seed``; at least 2 themes in each held-out
  part and in training), and a task is an icon name within one part (``folder@train``,
  ``folder@test``) with its drawings by that part's themes, at least ``min(data.min_examples,
  themes in the part)``: with 12 themes a held-out task has 2 drawings (1-shot evaluation).
  ``by=theme`` splits hold out themes already. Themes that draw many names alike (``gnome``,
  ``mate``, ``Adwaita``: :func:`theme_families`) and variants (``breeze-dark`` of ``breeze``)
  are one family, held out together.

Each theme contributes, per name, its largest drawing (a scalable SVG counts as its largest
size; between equal sizes SVG wins), rasterised with resvg (the ``resvg-py`` wheel; system fonts
unused, so text-free and the same on every machine), composited on white, padded to a square
and resized to ``data.image_size``. Like every image source, values are ink = 1: a channel is
``1 - colour`` (white paper is 0 everywhere; :func:`fewgen.pictures.image_grid` draws the true
colours), ``(3, S, S)`` floats in [0, 1]; ``data.binarize`` does not apply to colour. Symbolic
(monochrome, ``*-symbolic``) icons, animations and sprite strips are left out, and a name whose
drawings are, in every theme, those of a name with more themes (``add`` of ``list-add``) is
that name's alias, not a task; a drawing that repeats another theme's (mean absolute difference
under :data:`NEAR_SAME`) is one example, not two. The prepared pictures (uint8) are cached in
``<cache>/icons`` (``data.cache_dir``; 11 MB for the default themes at 28 px, rasterised in about
10 s), keyed by the files (path, size, mtime) and the size; at most :data:`CACHE_FILES` files,
the least recently used removed.
"""

from __future__ import annotations

import configparser
import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..config import DataConfig
from ..errors import DataError
from .base import SPLITS, TaskSet
from .images import cache_dir
from .source import user_path

DEFAULT_ROOT = Path("/usr/share/icons")
THEME_PACKAGES: dict[str, str] = {  # the default themes (folder name -> the Debian package that installs it)
    "Adwaita": "adwaita-icon-theme", "Faba": "faba-icon-theme", "Moka": "moka-icon-theme",
    "Numix": "numix-icon-theme", "Tango": "tango-icon-theme", "breeze": "breeze-icon-theme",
    "elementary-xfce": "elementary-xfce-icon-theme", "gnome": "gnome-icon-theme", "mate": "mate-icon-theme",
    "nuoveXT2": "lxde-icon-theme", "oxygen": "oxygen-icon-theme", "suru": "suru-icon-theme",
}
ICON_SUFFIXES = (".png", ".svg")
MAX_ICON_BYTES = 8 << 20  # a larger icon file is refused (skipped), unread
MAX_ASPECT = 2.0  # a picture longer than this on one side is a sprite strip, not an icon
SVG_OVERSAMPLE = 2  # SVGs are drawn at this multiple of the size, then box-filtered down
NEAR_SAME = 0.01  # two pictures of a name closer than this (mean absolute difference) are one drawing
FAMILY_SHARE = 0.1  # two themes drawing this fraction of their common names alike are one family
TWIN_CHUNK = 64  # icon names compared at once (memory: TWIN_CHUNK x themes x 3 x S x S floats)
CACHE_VERSION = 1
CACHE_FILES = 8  # prepared icon sets kept in <cache>/icons


@dataclass(frozen=True)
class IconSpec:
    """The parsed argument of an ``icons`` spec."""

    root: Path  # the folder of the themes
    themes: tuple[str, ...]  # the themes named; () = the defaults (or every theme of a given root)
    by: str  # "name" | "theme": what a task is
    split: str  # "name" | "theme": what the splits hold out
    root_given: bool  # a PATH item was given


def parse_icons_arg(arg: str) -> IconSpec:
    """``THEME,...``, ``PATH``, ``by=name|theme`` and ``split=name|theme`` items, comma separated."""
    root, themes, opts = None, [], {"by": "name", "split": ""}
    for item in (s.strip() for s in arg.split(",")):
        if not item:
            continue
        key, eq, value = item.partition("=")
        if eq:
            if key not in opts or value not in ("name", "theme"):
                raise DataError(f"icons: unknown option '{item}'; use by=name|theme or split=name|theme")
            opts[key] = value
        elif "/" in item or item.startswith((".", "~")):
            if root is not None:
                raise DataError(f"icons: two folders given ('{root}' and '{item}'); give one PATH")
            root = user_path(item, "icons")
        elif item in themes:
            raise DataError(f"icons: the theme '{item}' is listed twice")
        else:
            themes.append(item)
    if opts["by"] == "theme" and opts["split"] == "name":
        raise DataError("icons: by=theme tasks are themes, so its splits hold out themes; split=name needs by=name")
    return IconSpec(root or DEFAULT_ROOT, tuple(themes), opts["by"], opts["split"] or opts["by"], root is not None)


# ----------------------------------------------------------------------------- reading themes

def _theme_index(theme_dir: Path) -> configparser.ConfigParser:
    """A theme's ``index.theme``, read leniently (themes repeat keys); unreadable -> DataError."""
    index = configparser.ConfigParser(interpolation=None, strict=False)
    index.optionxform = str  # keys are case-sensitive (Size, MaxSize)
    try:
        index.read_string((theme_dir / "index.theme").read_text(encoding="utf-8", errors="replace"))
    except (OSError, configparser.Error) as e:
        raise DataError(f"{theme_dir / 'index.theme'}: not a readable icon theme index ({e})") from None
    if "Icon Theme" not in index:
        raise DataError(f"{theme_dir / 'index.theme'}: no [Icon Theme] section (not an icon theme)")
    return index


def theme_dirs(theme_dir: Path) -> list[tuple[Path, int]]:
    """The folders of a theme that hold colour icons, with their nominal size in pixels.

    The size is ``Size`` x ``Scale`` (``MaxSize`` for a scalable folder); folders of the
    ``Animations`` context and folders named symbolic are left out.
    """
    index = _theme_index(theme_dir)
    head = index["Icon Theme"]
    names = [d.strip() for key in ("Directories", "ScaledDirectories") for d in head.get(key, "").split(",")]
    out = []
    for name in dict.fromkeys(n for n in names if n and n in index):
        sec = index[name]
        if sec.get("Context", "") == "Animations" or "symbolic" in name.lower():
            continue
        try:
            size, scale = int(sec.get("Size", "0")), int(sec.get("Scale", "1"))
            if sec.get("Type", "Threshold") == "Scalable":
                size = max(size, int(sec.get("MaxSize", str(size))))
        except ValueError:
            continue  # a folder with a malformed size is not one a desktop would use either
        out.append((theme_dir / name, size * scale))
    return out


def theme_icons(theme_dir: Path) -> dict[str, Path]:
    """Each non-symbolic icon name of a theme -> its largest drawing (an SVG wins a tie)."""
    best: dict[str, tuple[tuple[int, bool], str]] = {}
    for folder, size in theme_dirs(theme_dir):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # a folder the index lists but the package does not ship
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            if suffix not in ICON_SUFFIXES or stem.endswith("-symbolic"):
                continue
            rank = (size, suffix == ".svg")
            if (stem not in best or rank > best[stem][0]) and entry.is_file():  # a dangling link is no drawing
                best[stem] = (rank, entry.path)
    return {name: Path(path) for name, (_, path) in sorted(best.items())}


def find_themes(spec: IconSpec) -> dict[str, dict[str, Path]]:
    """The themes a spec names: theme -> (icon name -> file), in the spec's order."""
    root = spec.root
    if not root.is_dir():
        raise DataError(f"icons: {root} is not a folder of icon themes")
    if spec.themes:
        names = list(spec.themes)
    elif spec.root_given:
        names = sorted((p.name for p in root.iterdir() if (p / "index.theme").is_file()), key=str.lower)
    else:
        names = [t for t in THEME_PACKAGES if (root / t / "index.theme").is_file()]
        missing = [t for t in THEME_PACKAGES if t not in names]
        if missing and names:
            warnings.warn(f"icons: {len(missing)} default theme(s) not installed in {root} ({', '.join(missing)}): "
                          f"apt-get install {' '.join(THEME_PACKAGES[t] for t in missing)}", stacklevel=3)
    if not names:
        raise DataError(f"icons: no icon themes in {root} (on Debian: apt-get install "
                        f"{' '.join(THEME_PACKAGES.values())})")
    for t in names:
        if not (root / t / "index.theme").is_file():
            hint = f"; apt-get install {THEME_PACKAGES[t]}" if t in THEME_PACKAGES else ""
            raise DataError(f"icons: no icon theme '{t}' in {root} (no {root / t / 'index.theme'}){hint}")
    return {t: theme_icons(root / t) for t in names}


# ----------------------------------------------------------------------------- the pool of icons

def _find(parent: dict[str, str], x: str) -> str:
    """The representative of ``x``'s set (union-find with path halving)."""
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def _groups(pool: list[str], owners: dict[tuple[str, str], list[str]]) -> dict[str, str]:
    """name -> its split group: names that share a drawing in some theme, and mirrored variants
    (``-rtl``, ``-ltr``), are joined; a group is named after its first name in ``pool`` (the most drawn)."""
    parent = {n: n for n in pool}
    links = [(names[0], other) for names in owners.values() for other in names[1:]]
    for name in pool:  # a mirrored variant: edit-undo-rtl -> edit-undo
        stem, _, side = name.rpartition("-")
        if side in ("rtl", "ltr") and stem in parent:
            links.append((name, stem))
    for a, b in links:
        ra, rb = _find(parent, a), _find(parent, b)
        parent[rb] = ra
    label: dict[str, str] = {}
    for name in pool:  # most drawn first: the first name met names the group
        label.setdefault(_find(parent, name), name)
    return {n: label[_find(parent, n)] for n in pool}


def icon_pool(themes: dict[str, dict[str, Path]], min_themes: int
              ) -> tuple[dict[str, dict[str, Path]], dict[str, str]]:
    """The icon names drawn by at least ``min_themes`` themes, aliases dropped, and their split groups.

    Returns name -> (theme -> file) and name -> group. Names are taken most-drawn first; a name
    whose every drawing (its real file, links followed) is also the drawing of one name already
    taken is an alias of it and left out. Groups: see :func:`_groups`.
    """
    drawn: dict[str, dict[str, Path]] = {}
    for theme, icons in themes.items():
        for name, path in icons.items():
            drawn.setdefault(name, {})[theme] = path
    order = sorted((n for n, by in drawn.items() if len(by) >= min_themes), key=lambda n: (-len(drawn[n]), len(n), n))
    owners: dict[tuple[str, str], list[str]] = {}  # (theme, real file) -> names taken that draw it
    pool: dict[str, dict[str, Path]] = {}
    for name in order:
        real = {(t, os.path.realpath(p)) for t, p in drawn[name].items()}
        common = set.intersection(*(set(owners.get(k, ())) for k in real))
        if common:
            continue
        pool[name] = drawn[name]
        for k in real:
            owners.setdefault(k, []).append(name)
    return dict(sorted(pool.items())), _groups(list(pool), owners)


# ----------------------------------------------------------------------------- pictures

def _rgba(path: Path, size: int) -> Image.Image:
    """One icon file as an RGBA picture (an SVG drawn :data:`SVG_OVERSAMPLE` times ``size`` wide)."""
    if path.stat().st_size > MAX_ICON_BYTES:
        raise ValueError(f"over {MAX_ICON_BYTES} bytes")
    if path.suffix == ".svg":
        import resvg_py  # here: only SVGs need it, and a cached icon set needs nothing

        data = bytes(resvg_py.svg_to_bytes(svg_path=str(path), width=size * SVG_OVERSAMPLE, skip_system_fonts=True))
    else:
        data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        if img.width * img.height > (Image.MAX_IMAGE_PIXELS or 1 << 62):
            raise ValueError(f"{img.width}x{img.height} pixels is over the decompression-bomb limit")
        return img.convert("RGBA")


def rasterise(path: Path, size: int) -> np.ndarray:
    """An icon file (PNG or SVG) -> ``(size, size, 3)`` uint8 RGB: composited on white, padded
    to a square, resized. A file that cannot be read, or a sprite strip, is a DataError naming it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's warnings would reach the user without the file's name
            img = _rgba(path, size)
    except Exception as e:  # noqa: BLE001 - Pillow and resvg raise many types on malformed files
        why = (str(e).strip().splitlines() or [""])[0][:120]
        raise DataError(f"{path}: not a readable icon ({type(e).__name__}{': ' + why if why else ''})") from None
    w, h = img.size
    if min(w, h) < 1 or max(w, h) > MAX_ASPECT * min(w, h):
        raise DataError(f"{path}: {w}x{h} pixels is not an icon (a sprite strip?)")
    side = max(w, h)
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    square.alpha_composite(img, ((side - w) // 2, (side - h) // 2))
    resample = Image.Resampling.BOX if side >= size else Image.Resampling.BILINEAR
    return np.array(square.convert("RGB").resize((size, size), resample), dtype=np.uint8)


Entry = tuple[str, str, Path]  # (theme, icon name, file)


def _cache_path(entries: list[Entry], size: int, cfg: DataConfig) -> Path:
    """The cache file of these entries at this size: a digest of the files (path, size, mtime)."""
    digest = hashlib.sha256(f"icons v{CACHE_VERSION} s{size} x{SVG_OVERSAMPLE}".encode())
    for theme, name, path in entries:
        try:
            st = path.stat()
        except OSError as e:
            raise DataError(f"{path}: cannot read the icon ({e.strerror or e})") from None
        digest.update(f"\0{theme}\0{name}\0{path}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return cache_dir(cfg) / "icons" / f"icons-v{CACHE_VERSION}-s{size}-{digest.hexdigest()[:20]}.safetensors"


def _read_cache(path: Path, n: int) -> tuple[torch.Tensor, list[str]] | None:
    """The cached pictures and skip reasons, or None (absent, damaged or stale: rebuilt, never trusted)."""
    from safetensors.torch import load_file

    if not path.exists():
        return None
    try:
        t = load_file(str(path))
        skipped = json.loads(bytes(t["skipped"].tolist()).decode("utf-8"))
        if t["pixels"].shape[0] != n or t["pixels"].dtype != torch.uint8 or len(skipped) != n:
            raise ValueError("stale")
        os.utime(path)  # recently used: kept when the cache is trimmed
        return t["pixels"], skipped
    except Exception:  # noqa: BLE001
        path.unlink(missing_ok=True)
        return None


def _write_cache(path: Path, pixels: torch.Tensor, skipped: list[str]) -> None:
    """Write atomically, then keep only the :data:`CACHE_FILES` most recently used icon sets."""
    from safetensors.torch import save_file

    blob = torch.tensor(list(json.dumps(skipped).encode("utf-8")), dtype=torch.uint8)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        save_file({"pixels": pixels.contiguous(), "skipped": blob}, str(tmp))
        os.replace(tmp, path)
        files = sorted(path.parent.glob("icons-*.safetensors"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[CACHE_FILES:]:
            old.unlink(missing_ok=True)
    except OSError as e:  # a read-only cache costs time, not correctness
        warnings.warn(f"icons: cannot write the cache {path} ({e.strerror or e}); icons are rasterised again "
                      "next time (--set data.cache_dir=... picks another folder)", stacklevel=3)


def prepare_icons(entries: list[Entry], size: int, cfg: DataConfig) -> tuple[torch.Tensor, list[str]]:
    """The pictures of ``entries``, ``(N, 3, size, size)`` uint8 RGB on white, and per entry the
    reason it was skipped ("" when read), cached. ``data.strict``: a skipped file is a DataError."""
    from ..progress import Progress

    path = _cache_path(entries, size, cfg)
    cached = _read_cache(path, len(entries))
    if cached is None and any(p.suffix == ".svg" for _, _, p in entries):
        try:
            import resvg_py  # noqa: F401 - SVG icons are drawn with it
        except ImportError:
            raise DataError("icons: drawing SVG icons needs the resvg-py package: pip install 'fewgen[icons]' "
                            "(make install installs it)") from None
    if cached is None:
        pixels = torch.full((len(entries), 3, size, size), 255, dtype=torch.uint8)
        skipped = [""] * len(entries)
        bar = Progress(len(entries), 0, "icons: rasterising", unit="icon", leave=False)
        for i, (_, _, file) in enumerate(entries):
            try:
                pixels[i] = torch.from_numpy(rasterise(file, size)).permute(2, 0, 1)
            except DataError as e:
                skipped[i] = str(e)
            bar.update()
        bar.close()
        _write_cache(path, pixels, skipped)
        cached = pixels, skipped
    bad = [s for s in cached[1] if s]
    if bad and cfg.strict:
        raise DataError(bad[0])
    if bad:
        warnings.warn(f"icons: skipped {len(bad)} icon file(s) unreadable or not icons, e.g. {bad[0]} "
                      "(--set data.strict=true makes them errors)", stacklevel=3)
    return cached


# ----------------------------------------------------------------------------- tasks

def near_twins(entries: list[Entry], ink: torch.Tensor, themes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Drawings that are one drawing packaged twice (MATE forked GNOME's icons; Adwaita keeps
    GNOME's as legacy): ``(N,)`` True where an entry's picture is within :data:`NEAR_SAME` (mean
    absolute difference) of an earlier theme's picture of the same name; and ``(T, T)``, for two
    themes, the fraction of the names both draw that they draw alike. Vectorised over names,
    :data:`TWIN_CHUNK` names at a time (bounded memory)."""
    names = {n: i for i, n in enumerate(dict.fromkeys(n for _, n, _ in entries))}
    name_id = torch.tensor([names[n] for _, n, _ in entries], dtype=torch.long)
    theme_id = torch.tensor([themes.index(t) for t, _, _ in entries], dtype=torch.long)
    order = torch.argsort(name_id, stable=True)  # entries of a name together, in their order
    counts = torch.bincount(name_id, minlength=len(names))
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(entries)) - starts[name_id[order]]  # place within its name
    index = torch.full((len(names), int(counts.max())), -1, dtype=torch.long)  # (G, K) entry or -1
    index[name_id[order], slot] = order
    flat, T = ink.flatten(1), len(themes)
    twin = torch.zeros(len(entries), dtype=torch.bool)
    alike, shared = torch.zeros(T + 1, T + 1), torch.zeros(T + 1, T + 1)  # row/column T: empty slots
    for idx in index.split(TWIN_CHUNK):
        x = flat[idx.clamp(min=0)]  # (g, K, D)
        same = (torch.cdist(x, x, p=1) / flat.shape[1] < NEAR_SAME).float()  # (g, K, K)
        hot = F.one_hot(torch.where(idx >= 0, theme_id[idx.clamp(min=0)], T), T + 1).float()  # (g, K, T+1)
        shared += torch.einsum("gkt,gju->tu", hot, hot)
        alike += torch.einsum("gkt,gkj,gju->tu", hot, same, hot)
        first = torch.tril(same, -1).amax(2).bool() & (idx >= 0)  # like an earlier slot's drawing
        twin[idx[first]] = True
    return twin, alike[:T, :T] / shared[:T, :T].clamp_min(1)


def theme_families(themes: list[str], alike: torch.Tensor) -> dict[str, str]:
    """theme -> its family, one split group: themes that draw at least :data:`FAMILY_SHARE` of
    their common names alike (``alike`` from :func:`near_twins`), and variants (``breeze-dark``
    of ``breeze``), are one family, named ``A+B+...``."""
    parent = {t: t for t in themes}
    for i, a in enumerate(themes):
        for j, b in enumerate(themes[i + 1:], i + 1):
            if alike[i, j] >= FAMILY_SHARE or a.startswith(b + "-") or b.startswith(a + "-"):
                parent[_find(parent, b)] = _find(parent, a)
    members: dict[str, list[str]] = {}
    for t in themes:
        members.setdefault(_find(parent, t), []).append(t)
    return {t: "+".join(members[_find(parent, t)]) for t in themes}


def theme_parts(family: dict[str, str], cfg: DataConfig) -> dict[str, str]:
    """theme -> ``train`` | ``val`` | ``test`` for ``split=theme``: whole families, shuffled by
    ``data.split_seed``; each held-out part with a non-zero fraction gets at least 2 themes, and
    a family that would leave training fewer than 2 stays in training."""
    themes, families = list(family), sorted(set(family.values()))
    order = torch.randperm(len(families), generator=torch.Generator().manual_seed(cfg.split_seed)).tolist()
    left = [[t for t in themes if family[t] == families[i]] for i in order]  # families not yet held out
    total = sum(cfg.split_fractions)
    parts, held = {t: "train" for t in themes}, 0
    for part, frac in zip(SPLITS[1:], cfg.split_fractions[1:]):
        want, got = (max(2, round(frac / total * len(themes))) if frac > 0 else 0), 0
        for members in list(left):
            if got >= want:
                break
            if held + len(members) <= len(themes) - 2:
                parts.update(dict.fromkeys(members, part))
                got, held = got + len(members), held + len(members)
                left.remove(members)
    sizes = {p: sum(v == p for v in parts.values()) for p in SPLITS}
    if sizes["train"] < 2 or any(0 < sizes[p] < 2 or (sizes[p] == 0 and f > 0)
                                 for p, f in zip(SPLITS[1:], cfg.split_fractions[1:])):
        raise DataError(f"icons: split=theme needs at least 2 themes (of separate families) for training and for "
                        f"each held-out part; {len(themes)} themes give {sizes}")
    return parts


def _gather(keys: list[str], need: dict[str, int]) -> dict[str, list[int]]:
    """Rows per key, in order, for the keys with at least ``need[key]`` rows."""
    rows: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        rows.setdefault(key, []).append(i)
    return {k: r for k, r in sorted(rows.items()) if len(r) >= need[k]}


def _task_keys(entries: list[Entry], groups: dict[str, str], spec: IconSpec, family: dict[str, str],
               cfg: DataConfig) -> tuple[list[str], dict[str, int], dict[str, str], dict]:
    """Each entry's task, the examples a task needs, each task's group, and the TaskSet's meta."""
    meta: dict = {"themes": list(family)}
    if spec.by == "theme":
        return [t for t, _, _ in entries], dict.fromkeys(family, cfg.min_examples), family, meta
    if spec.split == "name":
        return [n for _, n, _ in entries], dict.fromkeys(groups, cfg.min_examples), groups, meta
    parts = theme_parts(family, cfg)
    sizes = {p: sum(v == p for v in parts.values()) for p in SPLITS}
    keys = [f"{n}@{parts[t]}" for t, n, _ in entries]
    need = {k: min(cfg.min_examples, sizes[k.rpartition("@")[2]]) for k in keys}
    meta["theme_split"] = {p: [t for t in family if parts[t] == p] for p in SPLITS}
    return keys, need, {k: groups[k.rpartition("@")[0]] for k in keys}, meta


def load_icons(arg: str, cfg: DataConfig) -> TaskSet:
    """Icon tasks from freedesktop icon themes (see the module's docstring for the spec)."""
    spec = parse_icons_arg(arg)
    if cfg.min_examples < 1:
        raise DataError(f"icons: data.min_examples must be at least 1, got {cfg.min_examples}")
    found = find_themes(spec)
    pool, groups = icon_pool(found, cfg.min_examples)
    if not pool:
        raise DataError(f"icons: no icon name is drawn by {cfg.min_examples} of the {len(found)} themes "
                        f"({', '.join(found)}); add themes or lower data.min_examples")
    entries = [(t, n, p) for n, by_theme in pool.items() for t, p in by_theme.items()]
    pixels, skipped = prepare_icons(entries, cfg.image_size, cfg)
    read = torch.tensor([not why for why in skipped])
    ink = 1.0 - pixels[read].float() / 255.0  # (N, 3, S, S): white paper = 0, like every image source
    entries = [e for e, ok in zip(entries, read.tolist()) if ok]
    twin, alike = near_twins(entries, ink, list(found))
    if spec.by == "name":  # an icon name's examples are distinct drawings
        ink, entries = ink[~twin], [e for e, t in zip(entries, twin.tolist()) if not t]
    keys, need, task_group, meta = _task_keys(entries, groups, spec, theme_families(list(found), alike), cfg)
    rows = _gather(keys, need)
    if not rows:
        raise DataError(f"icons: no task has {cfg.min_examples} distinct readable drawings; lower data.min_examples")
    names, cap = list(rows), cfg.max_examples_per_task or None
    if "theme_split" in meta:
        meta["split"] = {p: [k for k in names if k.endswith("@" + p)] for p in SPLITS}
    return TaskSet.from_lists(names, [task_group[k] for k in names], [ink[r[:cap]] for r in rows.values()],
                              "image", "icons" + (f":{arg}" if arg else ""), meta)
