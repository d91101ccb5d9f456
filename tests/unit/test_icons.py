"""The ``icons`` source: freedesktop icon themes, a concept (icon name) drawn by many artists (themes).

Two halves. Synthetic themes built here (PNG and SVG icons whose colour says which theme drew
them) test the source's logic on any machine. The Debian themes that ``make themes`` and
``.ci/run`` install test the real data; those tests skip, naming the packages, only where the
themes are not installed.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fewgen.config import DataConfig
from fewgen.errors import DataError
from fewgen.tasks import icons
from fewgen.tasks.spec import load_tasks, splits_of

ROOT = Path(__file__).resolve().parents[2]
SIZE = 16  # small pictures: the real themes rasterise once per cache, in seconds


# ----------------------------------------------------------------------------- synthetic themes

COLOURS = {  # theme -> the RGB its icons are drawn in, so an example tells which theme drew it
    "Alpha": (255, 0, 0), "Beta": (0, 160, 0), "Gamma": (0, 0, 255), "Delta": (255, 200, 0),
    "Eps": (160, 0, 160), "Zeta": (0, 160, 160),
}


def _index(theme: str) -> str:
    return (f"[Icon Theme]\nName={theme}\nDirectories=48x48/apps,scalable/apps,symbolic/apps\n\n"
            "[48x48/apps]\nSize=48\nContext=Applications\nType=Fixed\n\n"
            "[scalable/apps]\nSize=16\nMinSize=8\nMaxSize=512\nContext=Applications\nType=Scalable\n\n"
            "[symbolic/apps]\nSize=16\nMinSize=8\nMaxSize=512\nContext=Applications\nType=Scalable\n")


def _png(path: Path, rgb: tuple[int, int, int], shape: str, size: tuple[int, int] = (48, 48)) -> None:
    """A transparent picture with a coloured disc (``shape`` 'disc') or square ('square')."""
    a = np.zeros((size[1], size[0], 4), dtype=np.uint8)
    yy, xx = np.mgrid[: size[1], : size[0]]
    inside = ((xx - size[0] / 2) ** 2 + (yy - size[1] / 2) ** 2 < (min(size) / 3) ** 2) if shape == "disc" \
        else ((abs(xx - size[0] / 2) < size[0] / 4) & (abs(yy - size[1] / 2) < size[1] / 4))
    a[inside] = (*rgb, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a, "RGBA").save(path)


def _svg(path: Path, rgb: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="48" height="48" viewBox="0 0 48 48">'
                    f'<circle cx="24" cy="24" r="16" fill="rgb{rgb}"/></svg>', encoding="utf-8")


@pytest.fixture()
def theme_root(tmp_path: Path) -> Path:
    """Six themes. ``disc``: all six (Alpha: a 48 px PNG in grey and a red SVG, which wins);
    ``square``: all six, Zeta's exactly like Eps's (one drawing, not two); ``moon``: three;
    ``disc-alias``: a link to ``disc`` in five themes; ``disc-symbolic`` everywhere."""
    root = tmp_path / "icons"
    for theme, rgb in COLOURS.items():
        (root / theme).mkdir(parents=True)
        (root / theme / "index.theme").write_text(_index(theme), encoding="utf-8")
        apps = root / theme / "48x48" / "apps"
        if theme == "Alpha":
            _png(apps / "disc.png", (128, 128, 128), "disc")
            _svg(root / theme / "scalable" / "apps" / "disc.svg", rgb)
        else:
            _png(apps / "disc.png", rgb, "disc")
        _svg(root / theme / "symbolic" / "apps" / "disc-symbolic.svg", (0, 0, 0))
        _svg(root / theme / "scalable" / "apps" / "disc-symbolic.svg", (0, 0, 0))
        _png(apps / "square.png", COLOURS["Eps"] if theme == "Zeta" else rgb, "square")
        if theme != "Alpha":
            (apps / "disc-alias.png").symlink_to("disc.png")
        if theme in ("Alpha", "Beta", "Gamma"):
            _png(apps / "moon.png", rgb, "square")
    return root


def _cfg(tmp_path: Path, **kw) -> DataConfig:
    return DataConfig(image_size=SIZE, cache_dir=str(tmp_path / "cache"), **kw)


def _theme_of(x: torch.Tensor) -> str:
    """The theme whose colour an example is drawn in (ink = 1 - colour, at the centre)."""
    rgb = (1 - x[:, SIZE // 2, SIZE // 2]) * 255
    return min(COLOURS, key=lambda t: float(((rgb - torch.tensor(COLOURS[t], dtype=torch.float)) ** 2).sum()))


def test_synthetic_tasks_are_names_drawn_by_enough_themes(theme_root, tmp_path):
    ts = load_tasks(f"icons:{theme_root}", _cfg(tmp_path))
    # moon: 3 themes < 5; disc-alias: the same files as disc; *-symbolic: left out
    assert ts.names == ["disc", "square"] and ts.modality == "image"
    assert ts.example_shape == (3, SIZE, SIZE) and float(ts.data.min()) >= 0 and float(ts.data.max()) <= 1
    disc, square = ts.examples(0), ts.examples(1)
    assert [_theme_of(x) for x in disc] == sorted(COLOURS)  # one drawing per theme, the themes in name order
    assert _theme_of(disc[0]) == "Alpha"  # Alpha's scalable SVG (red) beats its 48 px grey PNG
    assert [_theme_of(x) for x in square] == ["Alpha", "Beta", "Delta", "Eps", "Gamma"]  # Zeta's copy of Eps's: one
    corners = ts.data[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert float(corners.abs().max()) < 0.02  # composited on white: paper is 0 (ink = 1)
    assert load_tasks(f"icons:{theme_root}", _cfg(tmp_path, min_examples=3)).names == ["disc", "moon", "square"]


def test_synthetic_theme_selection_and_by_theme(theme_root, tmp_path):
    cfg = _cfg(tmp_path, min_examples=2)
    picked = load_tasks(f"icons:{theme_root},Beta,Gamma", cfg)
    assert picked.names == ["disc", "moon", "square"] and picked.counts.tolist() == [2, 2, 2]
    by_theme = load_tasks(f"icons:{theme_root},by=theme", cfg)
    assert by_theme.names == sorted(COLOURS)  # a theme is a task: its icons are its examples
    for i, theme in enumerate(by_theme.names):  # (Zeta's square is drawn like Eps's)
        assert {_theme_of(x) for x in by_theme.examples(i)} == {theme} | ({"Eps"} if theme == "Zeta" else set())
    assert by_theme.groups[by_theme.names.index("Eps")] == by_theme.groups[by_theme.names.index("Zeta")] \
        != by_theme.groups[by_theme.names.index("Beta")]  # Zeta draws like Eps: one family


def test_synthetic_theme_split_holds_out_whole_themes(theme_root, tmp_path):
    cfg = _cfg(tmp_path, min_examples=2)
    ts = load_tasks(f"icons:{theme_root},split=theme", cfg)
    parts = ts.meta["theme_split"]
    assert sorted(t for p in parts.values() for t in p) == sorted(COLOURS)
    assert all(len(parts[p]) >= 2 for p in ("train", "val", "test"))
    family = {"Eps": "Zeta", "Zeta": "Eps"}
    assert all((t in parts[p]) == (family[t] in parts[p]) for p in parts for t in family)  # a family stays together
    for part, split in splits_of(ts, cfg).items():
        assert len(split) and all(n.endswith("@" + part) for n in split.names)
        drawn_by = {_theme_of(x) for i in range(len(split)) for x in split.examples(i)}
        assert drawn_by <= set(parts[part])


def test_synthetic_name_split_keeps_synonyms_together(theme_root, tmp_path):
    ts = load_tasks(f"icons:{theme_root}", _cfg(tmp_path, min_examples=3))
    assert len(set(ts.groups)) == 3  # disc, moon, square: no drawing shared
    shared = theme_root / "Gamma" / "48x48" / "apps"
    os.replace(shared / "moon.png", shared / "moon-old.png")
    (shared / "moon.png").symlink_to("square.png")  # Gamma draws moon with its square
    ts = load_tasks(f"icons:{theme_root}", _cfg(tmp_path, min_examples=3))
    assert ts.groups[ts.names.index("moon")] == ts.groups[ts.names.index("square")]
    splits = splits_of(ts, replace(_cfg(tmp_path), split_fractions=(0.4, 0.3, 0.3)))
    assert not set(splits["train"].names) & (set(splits["val"].names) | set(splits["test"].names))


def test_synthetic_cache_is_used_and_bounded(theme_root, tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)
    first = load_tasks(f"icons:{theme_root}", cfg)
    monkeypatch.setattr(icons, "rasterise", lambda *a: pytest.fail("rasterised again despite the cache"))
    assert torch.equal(load_tasks(f"icons:{theme_root}", cfg).data, first.data)
    monkeypatch.undo()
    _png(theme_root / "Beta" / "48x48" / "apps" / "disc.png", COLOURS["Gamma"], "disc")  # a changed file...
    assert _theme_of(load_tasks(f"icons:{theme_root}", cfg).examples(0)[1]) == "Gamma"  # ...is rasterised anew
    monkeypatch.setattr(icons, "CACHE_FILES", 2)
    for size in (8, 12, 20):
        load_tasks(f"icons:{theme_root}", replace(cfg, image_size=size))
    kept = sorted((tmp_path / "cache" / "icons").glob("icons-*.safetensors"))
    assert [re.search(r"-s(\d+)-", p.name).group(1) for p in kept] == ["12", "20"]  # the least recently used went


def test_synthetic_bad_input_is_one_line_naming_it(theme_root, tmp_path):
    cfg = _cfg(tmp_path)
    cases = {f"icons:{theme_root},Omega": "'Omega'", f"icons:{tmp_path}/nowhere": "nowhere",
             f"icons:{theme_root},by=style": "by=style", f"icons:{theme_root},by=theme,split=name": "split=name",
             f"icons:{theme_root},Beta,Beta": "'Beta'"}
    for spec, named in cases.items():
        with pytest.raises(DataError, match=re.escape(named)) as err:
            load_tasks(spec, cfg)
        assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="min_examples"):
        load_tasks(f"icons:{theme_root}", replace(cfg, min_examples=0))
    with pytest.raises(DataError, match="no icon name is drawn by 7"):
        load_tasks(f"icons:{theme_root}", replace(cfg, min_examples=7))
    bad = theme_root / "Delta" / "48x48" / "apps" / "square.png"
    bad.write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="skipped 1 icon file") as caught:
        assert load_tasks(f"icons:{theme_root}", cfg).names == ["disc"]  # square: 4 drawings left of 5
    assert str(bad) in str(caught[0].message)
    with pytest.raises(DataError, match=re.escape(str(bad))):
        load_tasks(f"icons:{theme_root}", replace(cfg, strict=True))
    strip = tmp_path / "strip.png"
    _png(strip, (255, 0, 0), "square", size=(48, 480))
    with pytest.raises(DataError, match="sprite strip"):
        icons.rasterise(strip, SIZE)


# ----------------------------------------------------------------------------- the Debian themes

def test_default_themes_are_what_make_installs():
    text = (ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    listed = re.search(r"^ICON_THEMES := (.*)$", text, re.MULTILINE).group(1).split()
    assert sorted(listed) == sorted(icons.THEME_PACKAGES.values())
    assert "make themes" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def debian_cfg() -> DataConfig:
    missing = [p for t, p in icons.THEME_PACKAGES.items() if not (icons.DEFAULT_ROOT / t / "index.theme").is_file()]
    if missing:
        pytest.skip(f"icon themes not installed (make themes, as root): {' '.join(missing)}")
    return DataConfig(image_size=SIZE)  # the user's cache: rasterised once, then read


@pytest.fixture(scope="module")
def debian_icons(debian_cfg):
    return load_tasks("icons", debian_cfg)


def test_debian_icons_are_colour_drawings_of_shared_names(debian_icons, debian_cfg):
    ts = debian_icons
    assert len(ts) >= 400 and ts.example_shape == (3, SIZE, SIZE)  # measured: 597 names by 5+ of the 12 themes
    assert int(ts.counts.min()) >= debian_cfg.min_examples and int(ts.counts.max()) <= len(icons.THEME_PACKAGES)
    assert {"folder", "user-trash", "printer", "edit-copy"} <= set(ts.names)
    adwaita = icons.DEFAULT_ROOT / "Adwaita"
    assert next(adwaita.glob("*/*/*-symbolic.*"), None) is not None  # there are symbolic icons to leave out...
    assert not [n for n in ts.names if n.endswith("-symbolic")]  # ...and they are left out
    assert float(ts.data.min()) >= 0 and float(ts.data.max()) <= 1
    border = torch.cat([ts.data[..., 0, :], ts.data[..., -1, :], ts.data[..., 0], ts.data[..., -1]], -1)
    assert float(border.mean()) < 0.15  # on white: the paper is 0
    chroma = ts.data.amax(1) - ts.data.amin(1)  # (N, S, S): 0 for grey
    assert float((chroma > 0.3).float().mean()) > 0.05  # colour, not grey


def test_debian_splits_hold_out_names_or_themes(debian_icons, debian_cfg):
    splits = splits_of(debian_icons, debian_cfg)
    names = {s: set(t.names) for s, t in splits.items()}
    groups = {s: set(t.groups) for s, t in splits.items()}
    assert all(names.values()) and not (names["train"] & names["test"]) and not (names["train"] & names["val"])
    assert not (groups["train"] & (groups["val"] | groups["test"]))
    by_theme = load_tasks("icons:split=theme", debian_cfg)
    parts = by_theme.meta["theme_split"]
    assert sorted(t for p in parts.values() for t in p) == sorted(icons.THEME_PACKAGES)
    found = icons.find_themes(icons.parse_icons_arg(""))
    for part, split in splits_of(by_theme, debian_cfg).items():
        assert len(split) and all(n.endswith("@" + part) for n in split.names)
        name = split.names[0].rpartition("@")[0]  # its examples are that icon in this part's themes
        drawn = [icons.rasterise(found[t][name], SIZE) for t in parts[part] if name in found[t]]
        want = {(1 - torch.from_numpy(a).permute(2, 0, 1).float() / 255).numpy().tobytes() for a in drawn}
        assert {x.numpy().tobytes() for x in split.examples(0)} <= want


def test_debian_by_theme_makes_each_theme_a_task(debian_cfg):
    ts = load_tasks("icons:by=theme", debian_cfg)
    assert sorted(ts.names) == sorted(icons.THEME_PACKAGES)
    assert int(ts.counts.min()) >= 100  # every theme draws 100+ of the shared names
    group = dict(zip(ts.names, ts.groups))
    assert group["gnome"] == group["mate"] != group["oxygen"]  # MATE forked GNOME's icons: one family


def test_debian_bad_theme_is_one_line_naming_it(debian_cfg, tmp_path, capsys):
    from fewgen.cli import main

    with pytest.raises(DataError, match="'NoSuchTheme'"):
        load_tasks("icons:Tango,NoSuchTheme", debian_cfg)
    fmt = warnings.formatwarning
    try:
        code = main(["data", "show", "icons:Tango,NoSuchTheme", "--out", str(tmp_path / "x.png")])
    finally:
        warnings.formatwarning = fmt  # main() replaces it
    err = capsys.readouterr().err.strip()
    assert code == 2 and "NoSuchTheme" in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_data_show_icons_writes_a_colour_grid(debian_cfg, tmp_path, capsys):
    from fewgen.cli import main

    out = tmp_path / "icons.png"
    fmt = warnings.formatwarning
    try:
        code = main(["data", "show", "icons", "--out", str(out), "--tasks", "4", "--set", f"data.image_size={SIZE}"])
    finally:
        warnings.formatwarning = fmt
    assert code == 0 and "examples of shape (3, 16, 16)" in capsys.readouterr().out
    a = np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)
    spread = a.max(2) - a.min(2)  # 0 for grey pixels (the frame, the labels)
    assert (spread > 60).mean() > 0.02  # drawn in colour
