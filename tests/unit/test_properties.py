"""Property-based tests (hypothesis): whatever the input, the data-spec parser, config
overrides and the image and text loaders either work or raise their one-line error type."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fewgen.config import Config, apply_overrides, config_to_dict
from fewgen.errors import ConfigError, DataError
from fewgen.tasks.base import TaskSet
from fewgen.tasks.images import read_image
from fewgen.tasks.spec import SOURCES, load_tasks, parse_spec

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def empty_cwd(tmp_path_factory):
    """Relative paths drawn by hypothesis resolve inside an empty folder, not the repository."""
    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(old)


@FAST
@given(st.text())
def test_spec_parser_only_raises_data_error(spec):
    try:
        name, arg = parse_spec(spec)
    except DataError as e:
        assert str(e)
        return
    assert name in SOURCES and spec.strip().startswith(name)


# Sources whose argument is a path or a list: a random argument must not download or crash.
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["folder", "text", "omniglot", "words", "toy", "glyphs"]),
       st.text(min_size=1, max_size=40))
def test_load_tasks_with_random_arguments_only_raises_data_error(empty_cwd, name, arg):
    assume(arg.strip(", ") != "" or name not in ("words",))  # an empty list means every language
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ts = load_tasks(f"{name}:{arg}")
        except DataError as e:
            assert str(e)
            return
    assert isinstance(ts, TaskSet)


KEYS = [f"{s}.{k}" for s, fields in config_to_dict(Config()).items() for k in fields] + ["model.extra.features"]
VALUES = st.one_of(
    st.text(max_size=30), st.integers().map(str), st.floats(allow_nan=True).map(repr),
    st.sampled_from(["true", "false", "[1, 2]", "[]", "{a=1}", "inf", "-0", "1e400", "'x'", "[0.7, 0.2, 0.1]",
                     "1979-05-27", "[1, [2]]", '"a\\nb"', "0x10"]))


@FAST
@given(st.one_of(st.sampled_from(KEYS), st.text(max_size=30)), VALUES)
def test_config_overrides_apply_or_raise_config_error(key, value):
    try:
        cfg = apply_overrides(Config(), [f"{key}={value}"])
    except ConfigError as e:
        assert str(e)
        return
    assert isinstance(cfg, Config)


@FAST
@given(st.lists(st.text(max_size=20), max_size=3))
def test_override_strings_without_structure(items):
    try:
        apply_overrides(Config(), items)
    except ConfigError:
        pass


MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"\xff\xd8\xff", b"RIFF\x00\x00\x00\x00WEBP",
         b"P5\n", b"\x00\x00\x01\x00"]


@FAST
@given(st.sampled_from(MAGIC), st.binary(max_size=300))
def test_image_decoder_on_random_bytes(magic, data):
    try:
        a = read_image(magic + data, 8, True, "random.png")
    except DataError as e:
        assert str(e).startswith("random.png: ")
        return
    assert a.shape == (1, 8, 8) and a.dtype == np.float32 and np.isfinite(a).all()


@FAST
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=3))
def test_image_folder_on_random_bytes_skips_or_raises_data_error(tmp_path_factory, blobs):
    root = tmp_path_factory.mktemp("imgs")
    (root / "t").mkdir()
    for i, b in enumerate(blobs):
        (root / "t" / f"{i}.png").write_bytes(b)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        try:
            ts = load_tasks(f"folder:{root}")
        except DataError as e:
            assert str(root) in str(e)
            return
    assert len(ts) == 1


@FAST
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=3))
def test_text_loader_on_random_bytes_names_the_file_or_loads(tmp_path_factory, blobs):
    root = tmp_path_factory.mktemp("text")
    for i, b in enumerate(blobs):
        (root / f"task{i}.txt").write_bytes(b)
    try:
        ts = load_tasks(f"text:{root}")
    except DataError as e:
        msg = str(e)
        assert any(f"task{i}.txt" in msg for i in range(len(blobs))) or str(root) in msg, msg
        return
    from fewgen.models.bytes import decode_batch

    for i, name in enumerate(ts.names):
        lines = [s.strip() for s in blobs[int(name[4:])].decode("utf-8").split("\n")]
        assert decode_batch(ts.examples(i)) == [s.lstrip("\ufeff") for s in lines if s.lstrip("\ufeff")]
