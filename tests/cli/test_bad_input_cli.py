"""Bad input through the real command line (``python -m fewgen``): exit status 2, exactly one
line on stderr naming the file or value and the problem, never a traceback (issue 7).

The commands are independent, so they run a few at a time in one module fixture: each one
is mostly Python and torch start-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import cli_in_process, make_image_folder

TINY = ["--set", "data.image_size=8", "--set", "model.hidden=4", "--set", "model.latent=4", "--set", "model.context=8",
        "--set", "model.extra.features=16", "--set", "train.meta_batch=4", "--quiet"]


def png_claiming_size(width: int, height: int) -> bytes:
    import io
    import struct
    import zlib

    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    b = bytearray(buf.getvalue())
    struct.pack_into(">II", b, 16, width, height)
    struct.pack_into(">I", b, 29, zlib.crc32(bytes(b[12:29])))
    return bytes(b)


def build_inputs(root: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (fewgen arguments, substrings the one error line must contain)."""
    from fewgen import checkpoint as ckpt
    from fewgen.config import Config
    from fewgen.models.image_vae import ImageVAE

    few = make_image_folder(root / "few", tasks=6, per_task=3, size=8)  # 3 images per task
    good = make_image_folder(root / "good", tasks=8, per_task=8, size=8)
    bad = make_image_folder(root / "bad", tasks=3, per_task=4, size=8)
    (bad / "task01" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    bomb = make_image_folder(root / "bomb", tasks=2, per_task=2, size=8)
    (bomb / "task00" / "bomb.png").write_bytes(png_claiming_size(9000, 9000))
    text = root / "text"
    text.mkdir()
    (text / "fine.txt").write_text("one\n\ntwo\n")
    (text / "latin1.txt").write_bytes(b"ok\n\ncaf\xe9\n")
    evil = root / "evil"
    evil.mkdir()
    with zipfile.ZipFile(evil / "images_background.zip", "w") as zf:
        zf.writestr("images_background/A/character01/1.png", (good / "task00" / "0.png").read_bytes())
        zf.writestr("../evil.png", (good / "task00" / "0.png").read_bytes())
    toml = root / "preset.toml"
    toml.write_text("[train]\nstepz = 10\n")

    torch_model = ImageVAE(image_size=8, channels=1, hidden=4, latent=4, context=8, features=16)
    cks = {}
    for name in ("garbage", "modified", "v2", "nohash", "family"):
        cks[name] = ckpt.save(root / f"ck_{name}", torch_model, Config())
    (cks["garbage"] / "config.json").write_bytes(b"\x00\x01 not json")
    w = cks["modified"] / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-4] + b"\x00\x00\x00\x00")
    for name, change in (("v2", lambda m: m.update(format_version=2)), ("nohash", lambda m: m.pop("sha256")),
                         ("family", lambda m: m["model"].update(family="pixelcnn"))):
        meta = json.loads((cks[name] / "config.json").read_text())
        change(meta)
        (cks[name] / "config.json").write_text(json.dumps(meta))

    out = str(root / "out")
    train = ["train", "--out", out, *TINY, "--steps", "3"]
    return {
        "unknown_spec": (["train", "--data", "nonsense", "--out", out], ["unknown data spec 'nonsense'; valid sources:"]),
        "too_few_examples": ([*train, "--data", f"folder:{few}", "--shots", "5"],
                             ["no meta-train task has 6 examples (shots 5 + 1 query; the most is 3)",
                              "train.shots=2 would work (--shots 2, or --set train.shots=2)"]),
        "strict_corrupt_file": (["data", "show", f"folder:{bad}", "--out", str(root / "g.png"), "--set", "data.strict=true"],
                                [f"{bad}/task01/broken.png: not a readable image"]),
        "strict_in_train": ([*train, "--data", f"folder:{bad}", "--set", "data.strict=true"], ["broken.png: not a readable image"]),
        "huge_image": (["data", "show", f"folder:{bomb}", "--out", str(root / "g.png"), "--set", "data.strict=true"],
                       ["bomb.png: image is too large", "pixels"]),
        "empty_folder": ([*train, "--data", f"folder:{root / 'ck_v2'}"], ["no task sub-folders"]),
        "missing_folder": ([*train, "--data", f"folder:{root / 'nope'}"], [f"{root / 'nope'}: not a folder"]),
        "text_not_utf8": ([*train, "--data", f"text:{text}"], ["latin1.txt: line 3 is not valid UTF-8"]),
        "unknown_key": ([*train, "--data", f"folder:{good}", "--set", "train.stepz=3"],
                        ["unknown config key 'train.stepz'; valid keys: train.algo, train.steps"]),
        "unknown_key_toml": ([*train, "--data", f"folder:{good}", "--config", str(toml)], ["unknown config key 'train.stepz'"]),
        "wrong_type": ([*train, "--data", f"folder:{good}", "--set", "train.lr=fast"], ["'train.lr' must be a number, got 'fast'"]),
        "value_with_newline": ([*train, "--data", f"folder:{good}", "--set", "train.steps=3\nrm -rf"],
                               ["'train.steps' must be an integer", "\\n"]),
        "zero_interval": ([*train, "--data", f"folder:{good}", "--set", "train.log_every=0"],
                          ["'train.log_every' must be at least 1"]),
        "argparse_value": (["train", "--out", out, "--steps", "many"], ["--steps: invalid int value: 'many'"]),
        "archive_traversal": ([*train, "--data", f"omniglot:{evil}"], ["refused: archive member '../evil.png' has an unsafe path"]),
        "nothing_to_resume": (["train", "--out", str(root / "never"), "--resume"], ["nothing to resume"]),
        "missing_checkpoint": (["eval", str(root / "no_ckpt")], [f"{root / 'no_ckpt'}: no such checkpoint folder"]),
        "garbage_config_json": (["eval", str(cks["garbage"])], ["ck_garbage/config.json: corrupted (not valid JSON)"]),
        "hash_mismatch": (["sample", str(cks["modified"]), "--out", str(root / "s.png")],
                          ["ck_modified/model.safetensors: integrity check failed"]),
        "format_version": (["eval", str(cks["v2"])], ["format version 2 is not supported"]),
        "missing_hash": (["eval", str(cks["nohash"])], ["no SHA-256"]),
        "other_family": (["eval", str(cks["family"])], ["unknown model family 'pixelcnn'"]),
        "diverged": (["train", "--out", str(root / "out_diverged"), *TINY, "--steps", "3", "--data", f"folder:{good}", "--set", "train.lr=1e30", "--set", "train.shots=2",
                      "--set", "train.queries=3", "--steps", "20"], ["loss became", "try a lower train.lr"]),
    }


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    return subprocess.run([sys.executable, "-m", "fewgen", *args], capture_output=True, text=True, env=env, timeout=300)


# These go through a real ``python -m fewgen`` process (exit status, nothing escapes main);
# the others call ``fewgen.cli.main`` in this process: the same code path, without the
# seconds of start-up each.
IN_A_PROCESS = {"too_few_examples", "strict_corrupt_file", "value_with_newline", "archive_traversal",
                "hash_mismatch", "diverged"}


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return build_inputs(tmp_path_factory.mktemp("bad_cli"))


@pytest.fixture(scope="module")
def processes(cases, tmp_path_factory):
    """The IN_A_PROCESS cases and a run with skipped files, a few processes at a time."""
    root = make_image_folder(tmp_path_factory.mktemp("skips") / "imgs", tasks=2, per_task=3, size=8)
    for i in range(3):
        (root / "task00" / f"junk{i}.jpg").write_bytes(np.random.default_rng(i).bytes(64))
    jobs = {name: cases[name][0] for name in IN_A_PROCESS}
    jobs["skips"] = ["data", "show", f"folder:{root}", "--out", str(root.parent / "g.png"), "--tasks", "2"]
    with ThreadPoolExecutor(max_workers=3) as pool:
        done = dict(zip(jobs, pool.map(run_cli, jobs.values())))
    done["skips_root"] = root
    return done


def in_process(args: list[str], capsys, monkeypatch) -> subprocess.CompletedProcess:
    return cli_in_process(args, capsys, monkeypatch)


CASES = ["unknown_spec", "too_few_examples", "strict_corrupt_file", "strict_in_train", "huge_image", "empty_folder",
         "missing_folder", "text_not_utf8", "unknown_key", "unknown_key_toml", "wrong_type", "value_with_newline",
         "zero_interval", "argparse_value", "archive_traversal", "nothing_to_resume", "missing_checkpoint",
         "garbage_config_json", "hash_mismatch", "format_version", "missing_hash", "other_family", "diverged"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clear_line_and_exit_2(cases, processes, case, capsys, monkeypatch):
    args, expected = cases[case]
    r = processes[case] if case in IN_A_PROCESS else in_process(args, capsys, monkeypatch)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(("fewgen: error: ", "fewgen train: error: ")), lines[0]
    for part in expected:
        assert part in lines[0], (part, lines[0])


def test_every_case_is_checked(cases):
    assert sorted(CASES) == sorted(cases) and IN_A_PROCESS <= set(CASES)


def test_skipped_files_are_one_warning_with_a_count(processes):
    r, root = processes["skips"], processes["skips_root"]
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"fewgen: warning: {root}: skipped 3 unreadable image file(s), e.g. {root}/task00/junk0.jpg "
        "(--set data.strict=true makes them errors)"]
    assert Image.open(root.parent / "g.png").size[0] > 0
