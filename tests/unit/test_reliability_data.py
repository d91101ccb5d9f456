"""Bad data never crashes obscurely: every problem is a one-line DataError / ConfigError naming
the file or value, or a skipped file counted in one warning (issue 7)."""

from __future__ import annotations

import hashlib
import io
import struct
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_image_folder
from fewgen.config import Config, DataConfig, apply_overrides, load_config
from fewgen.errors import ConfigError, DataError
from fewgen.tasks import images
from fewgen.tasks.spec import load_tasks, parse_spec


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels (a decompression bomb's header)."""
    b = bytearray(png_bytes(Image.new("L", (1, 1))))
    struct.pack_into(">II", b, 16, width, height)  # IHDR data starts at byte 16
    struct.pack_into(">I", b, 29, zlib.crc32(bytes(b[12:29])))  # the chunk's CRC covers type + data
    return bytes(b)


def square(mode: str, size=(30, 20), ink_dark=True) -> Image.Image:
    """A square of ink in the middle of a plain background, in ``mode``."""
    a = np.full(size[::-1], 255 if ink_dark else 0, np.uint8)
    h, w = a.shape
    a[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 0 if ink_dark else 255
    return Image.fromarray(a, "L").convert(mode)


# ----------------------------------------------------------------------------- image folders

@pytest.fixture()
def folder_with_bad_files(tmp_path) -> Path:
    root = make_image_folder(tmp_path / "imgs", tasks=3, per_task=4, size=16)
    bad = root / "task00"
    good = (bad / "0.png").read_bytes()
    (bad / "truncated.png").write_bytes(good[: len(good) // 2])
    (bad / "random.png").write_bytes(np.random.default_rng(0).bytes(500))
    (bad / "text.jpg").write_text("this is not a picture\n")
    (bad / "empty.gif").write_bytes(b"")
    (bad / "notes.txt").write_text("ignored: not an image suffix")
    return root


def test_corrupt_truncated_and_non_image_files_are_skipped_with_a_count(folder_with_bad_files):
    with pytest.warns(UserWarning, match=r"skipped 4 unreadable image file\(s\).*data\.strict=true") as rec:
        ts = load_tasks(f"folder:{folder_with_bad_files}", DataConfig(image_size=8))
    assert len([w for w in rec if "unreadable" in str(w.message)]) == 1  # one warning, not one per file
    assert ts.names == ["task00", "task01", "task02"] and ts.counts.tolist() == [4, 4, 4]


def test_strict_makes_unreadable_files_errors(folder_with_bad_files):
    with pytest.raises(DataError, match=r"task00/(empty\.gif|random\.png|text\.jpg|truncated\.png): not a readable image"):
        load_tasks(f"folder:{folder_with_bad_files}", DataConfig(image_size=8, strict=True))
    cfg = apply_overrides(Config(), ["data.strict=true"])  # what --set data.strict=true gives
    assert cfg.data.strict is True


def test_empty_task_folders_are_skipped_with_a_warning_and_all_empty_is_an_error(tmp_path):
    root = make_image_folder(tmp_path / "imgs", tasks=2, per_task=3, size=16)
    (root / "empty_task").mkdir()
    (root / "only_text").mkdir()
    (root / "only_text" / "readme.md").write_text("x")
    with pytest.warns(UserWarning, match=r"skipped 2 empty task folder\(s\)"):
        ts = load_tasks(f"folder:{root}", DataConfig(image_size=8))
    assert ts.names == ["task00", "task01"]

    empty = tmp_path / "empty_root"
    (empty / "a").mkdir(parents=True)
    (empty / "b").mkdir()
    with pytest.raises(DataError, match="every task folder is empty"):
        load_tasks(f"folder:{empty}")
    with pytest.raises(DataError, match="no task sub-folders"):
        load_tasks(f"folder:{empty / 'a'}")
    with pytest.raises(DataError, match="not a folder"):
        load_tasks(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(DataError, match="needs a path"):
        load_tasks("folder:")


def test_all_files_unreadable_is_an_error(tmp_path):
    d = tmp_path / "imgs" / "t"
    d.mkdir(parents=True)
    (d / "a.png").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="skipped 1"), pytest.raises(DataError, match="no readable images"):
        load_tasks(f"folder:{tmp_path / 'imgs'}")


def test_mixed_sizes_and_modes_all_load(tmp_path):
    d = tmp_path / "imgs" / "mixed"
    d.mkdir(parents=True)
    sixteen = np.full((24, 24), 60000, np.uint16)
    sixteen[6:18, 6:18] = 1000
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # transparent background: composited on white
    rgba.paste((0, 0, 0, 255), (10, 10, 30, 30))
    palette_t = square("RGB", (32, 32)).convert("P")
    palette_t.info["transparency"] = palette_t.getpixel((0, 0))  # the background is transparent
    files = {
        "rgb.png": square("RGB", (30, 20)), "rgba.png": rgba, "palette.png": square("P", (50, 50)),
        "palette_transparent.png": palette_t, "gray_alpha.png": square("LA", (17, 33)),
        "bilevel.png": square("1", (28, 28)), "light_on_dark.png": square("L", (64, 64), ink_dark=False),
        "sixteen_bit.png": Image.fromarray(sixteen), "gray.jpg": square("L", (45, 45)),
        "cmyk.jpg": square("CMYK", (40, 40)), "anim.gif": square("P", (20, 20)), "rgb.bmp": square("RGB", (9, 9)),
        "float.tif": Image.fromarray(np.where(np.asarray(square("L", (24, 24))) > 0, 1.0, 0.0).astype(np.float32)),
        "int32.tif": Image.fromarray(np.asarray(square("L", (24, 24))).astype(np.int32) * 1000),
    }
    for name, img in files.items():
        img.save(d / name)
    modes = {Image.open(d / n).mode for n in files}
    assert {"RGB", "RGBA", "P", "LA", "1", "L", "CMYK", "F"} <= modes and modes & {"I;16", "I"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not a single file skipped
        ts = load_tasks(f"folder:{tmp_path / 'imgs'}", DataConfig(image_size=8, strict=True))
    x = ts.examples(0)
    assert x.shape == (len(files), 1, 8, 8)
    # Whatever the mode, the square is ink (1) and the background is not (0).
    assert (x[:, 0, 3:5, 3:5] == 1).all() and (x[:, 0, 0, 0] == 0).all()


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    d = tmp_path / "imgs" / "t"
    d.mkdir(parents=True)
    square("L", (16, 16)).save(d / "ok.png")
    # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that; fewgen refuses both.
    (d / "bomb_warn_band.png").write_bytes(png_claiming_size(9000, 9000))  # 81 M > 64 M pixels
    (d / "bomb.png").write_bytes(png_claiming_size(30000, 30000))
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        ts = load_tasks(f"folder:{tmp_path / 'imgs'}", DataConfig(image_size=8))
    assert ts.counts.tolist() == [1]
    for name in ("bomb_warn_band.png", "bomb.png"):
        with pytest.raises(DataError, match=rf"{name}: image is too large \(over the limit of 64000000 pixels"):
            images.read_image(d / name, 8, True, str(d / name))
    # A real, decodable image over a (lowered) limit is refused too, not decoded.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    big = png_bytes(square("L", (40, 40)))  # 1600 pixels: Pillow alone would only warn
    with pytest.raises(DataError, match="big.png: image is too large"):
        images.read_image(big, 8, True, "big.png")
    with pytest.raises(DataError, match="too large"):
        load_tasks(f"folder:{tmp_path / 'imgs'}", DataConfig(image_size=8, strict=True))


# ----------------------------------------------------------------------------- text folders

def test_text_non_utf8_is_an_error_naming_file_and_line(tmp_path):
    (tmp_path / "good.txt").write_text("alpha\nbeta\n", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes("ok\n".encode() + b"caf\xe9 latin-1\n")
    with pytest.raises(DataError, match=r"bad\.txt: line 2 is not valid UTF-8 \(byte 3\)"):
        load_tasks(f"text:{tmp_path}")


def test_text_empty_lines_crlf_and_bom_are_handled(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"\xef\xbb\xbfone\r\n\r\n   \n\ttwo\t\n\n")
    (tmp_path / "blank.txt").write_text("\n\n  \n")  # no examples: not a task
    ts = load_tasks(f"text:{tmp_path}")
    assert ts.names == ["a"]
    from fewgen.models.bytes import decode_batch

    assert decode_batch(ts.examples(0)) == ["one", "two"]


def test_text_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_tasks(f"text:{tmp_path / 'missing'}")
    with pytest.raises(DataError, match="no .txt files"):
        load_tasks(f"text:{tmp_path}")
    (tmp_path / "blank.txt").write_text("\n \n")
    with pytest.raises(DataError, match="hold no usable lines"):
        load_tasks(f"text:{tmp_path}")


def test_text_unreadable_file_is_a_data_error(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("x\n")

    def fail(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", fail)
    with pytest.raises(DataError, match=r"a\.txt: cannot read the file \(Permission denied\)"):
        load_tasks(f"text:{tmp_path}")


# ----------------------------------------------------------------------------- specs and config

@pytest.mark.parametrize("spec, match", [
    ("nonsense", "unknown data spec 'nonsense'; valid sources: .*folder.*omniglot"),
    ("", "empty data spec"),
    ("Folder:/x", "unknown data spec"),
    ("glyphs:extra", "glyphs takes no argument"),
    ("folder:~no_such_user_fewgen/x", "folder: cannot expand the path"),
    ("text:a\0b", "contains a NUL byte"),
    ("words:xx-not-a-language", "words: unknown language 'xx-not-a-language'"),
    ("toy:nope", "unknown toy family"),
])
def test_bad_data_specs(spec, match):
    with pytest.raises(DataError, match=match):
        load_tasks(spec)


def test_unknown_config_keys_list_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'train.stepz'; valid keys: train.algo, train.steps"):
        apply_overrides(Config(), ["train.stepz=3"])
    with pytest.raises(ConfigError, match=r"unknown config key 'trian.steps'; sections: data, model, train, eval"):
        apply_overrides(Config(), ["trian.steps=3"])
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        apply_overrides(Config(), ["train.steps"])
    toml = tmp_path / "c.toml"
    toml.write_text("[model]\nhiden = 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'model.hiden'; valid keys: model.family, model.hidden"):
        load_config(toml)
    toml.write_text("[model\n")
    with pytest.raises(ConfigError, match="c.toml: not valid TOML"):
        load_config(toml)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.toml")


@pytest.mark.parametrize("override, match", [
    ("train.steps=ten", "'train.steps' must be an integer, got 'ten'"),
    ("train.steps=1.5", "'train.steps' must be an integer, got 1.5"),
    ("train.lr=fast", "'train.lr' must be a number"),
    ("train.lr=nan", "'train.lr' must be a finite number"),
    ("train.lr=1" + "0" * 400, "'train.lr' must be a finite number"),
    ("train.seed=1" + "0" * 30, "'train.seed' is out of range"),
    ("data.binarize=maybe", "'data.binarize' must be true or false"),
    ("data.split_fractions=[0.5, 0.5]", "must have 3 values"),
    ("eval.shots=[1, 'x']", "'eval.shots' must be an integer"),
    ("model.extra=[1]", "'model.extra' must be a table"),
    ("train.val_every=0", "'train.val_every' must be at least 1"),
    ("train.meta_batch=-2", "'train.meta_batch' must be at least 1"),
    ("train.lr=0", "'train.lr' must be greater than 0"),
    ("train.min_shots=9", "'train.min_shots' .* must not exceed"),
    ("train.steps.x=1", "unknown config key 'train.steps.x'"),
])
def test_wrong_config_values_are_config_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(Config(), [override])


def test_string_keys_take_the_text_as_written():
    cfg = apply_overrides(Config(), ["data.cache_dir=2024", "data.spec=folder:/tmp/x"])
    assert cfg.data.cache_dir == "2024" and cfg.data.spec == "folder:/tmp/x"


def test_parse_spec_splits_name_and_argument():
    assert parse_spec("folder:/a:b") == ("folder", "/a:b")


# ----------------------------------------------------------------------------- archives

def omniglot_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


GOOD = {f"images_background/Alpha/character0{c}/{i}.png": png_bytes(square("L", (20, 20))) for c in (1, 2) for i in range(3)}


def test_a_well_formed_archive_loads(tmp_path):
    omniglot_zip(tmp_path / "o" / "images_background.zip", GOOD)
    ts = load_tasks(f"omniglot:{tmp_path / 'o'}", DataConfig(image_size=8))
    assert ts.names == ["Alpha/character01", "Alpha/character02"] and ts.counts.tolist() == [3, 3]


@pytest.mark.parametrize("member", [
    "../evil.png", "images_background/Alpha/../../evil.png", "/images_background/Alpha/character01/x.png",
    "images_background/Alpha/character01/..\\..\\evil.png", "C:/evil/Alpha/character01/x.png",
])
def test_archive_path_traversal_and_absolute_paths_are_refused(tmp_path, member):
    omniglot_zip(tmp_path / "o" / "images_background.zip", {**GOOD, member: png_bytes(square("L"))})
    with pytest.raises(DataError, match="refused: archive member .* has an unsafe path"):
        load_tasks(f"omniglot:{tmp_path / 'o'}")


def test_corrupt_archives_are_data_errors(tmp_path):
    z = omniglot_zip(tmp_path / "o" / "images_background.zip", GOOD)
    data = z.read_bytes()
    z.write_bytes(data[: len(data) // 2])  # a truncated download
    with pytest.raises(DataError, match="not a valid zip archive"):
        load_tasks(f"omniglot:{tmp_path / 'o'}")
    # Damaged compressed data inside an intact directory: a CRC or zlib error, not a crash.
    damaged = bytearray(data)
    first = data.index(b"PK\x03\x04") + 30 + len(next(iter(GOOD)))
    damaged[first + 5: first + 40] = bytes(35)
    z.write_bytes(bytes(damaged))
    with pytest.raises(DataError, match="not a valid zip archive"):
        load_tasks(f"omniglot:{tmp_path / 'o'}")


def test_oversized_archive_members_are_refused(tmp_path, monkeypatch):
    omniglot_zip(tmp_path / "o" / "images_background.zip", GOOD)
    monkeypatch.setattr(images, "MAX_MEMBER_BYTES", 10)  # a zip bomb's member, in miniature
    with pytest.raises(DataError, match=r"refused: archive member .* bytes uncompressed \(limit 10\)"):
        load_tasks(f"omniglot:{tmp_path / 'o'}")


# ----------------------------------------------------------------------------- downloads

class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_download_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    calls = []

    def urlopen(url, timeout=None):
        calls.append(url)
        return FakeResponse(b"<html>not the archive</html>")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    with pytest.raises(DataError, match=r"images_background.zip: checksum mismatch .*place the official "
                                        r"images_background.zip in .* by hand") as e:
        load_tasks("omniglot", DataConfig(cache_dir=str(tmp_path)))
    assert "expected 68d2efa1b9178cc56df9314c21c6e718" in str(e.value) and len(calls) == 1
    assert list((tmp_path / "omniglot").iterdir()) == []  # neither the bad file nor a .part is left


def test_download_network_failure_says_how_to_place_files(tmp_path, monkeypatch):
    def urlopen(url, timeout=None):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    with pytest.raises(DataError, match="could not download .*by hand into"):
        images.download_omniglot(tmp_path / "o")


def test_download_verifies_and_keeps_good_files(tmp_path, monkeypatch):
    payload = b"pretend archive"
    monkeypatch.setattr(images, "OMNIGLOT_MD5", {"images_background.zip": hashlib.md5(payload).hexdigest()})
    calls = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: calls.append(url) or FakeResponse(payload))
    (path,) = images.download_omniglot(tmp_path)
    assert path.read_bytes() == payload and len(calls) == 1
    images.download_omniglot(tmp_path)  # verified copy present: not downloaded again
    assert len(calls) == 1
    path.write_bytes(b"tampered")  # a damaged copy is replaced
    images.download_omniglot(tmp_path)
    assert len(calls) == 2 and path.read_bytes() == payload
