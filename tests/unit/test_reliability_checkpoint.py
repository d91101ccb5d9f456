"""Checkpoints: missing or corrupted files, other formats and families, tampering, unsafe
pickles, crashes mid-write and full disks (issue 7)."""

from __future__ import annotations

import ast
import errno
import json
from pathlib import Path

import pytest
import torch

from fewgen import checkpoint as ckpt
from fewgen.config import Config
from fewgen.errors import CheckpointError, FewgenError
from fewgen.models.image_vae import ImageVAE

SRC = Path(__file__).resolve().parents[2] / "src" / "fewgen"


def tiny_model(seed: int = 0) -> ImageVAE:
    torch.manual_seed(seed)
    return ImageVAE(image_size=8, channels=1, hidden=4, latent=4, context=8, features=16)


@pytest.fixture()
def saved(tmp_path) -> Path:
    return ckpt.save(tmp_path / "run", tiny_model(), Config(), {"note": "first"})


def edit_meta(path: Path, change) -> None:
    meta = json.loads((path / ckpt.CONFIG_FILE).read_text())
    change(meta)
    (path / ckpt.CONFIG_FILE).write_text(json.dumps(meta))


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_round_trip_records_and_checks_a_hash(saved):
    meta = json.loads((saved / ckpt.CONFIG_FILE).read_text())
    assert meta["sha256"][ckpt.MODEL_FILE] == ckpt.sha256_of(saved / ckpt.MODEL_FILE)
    assert same_weights(ckpt.load(saved).model, tiny_model())


def test_missing_checkpoint_files(tmp_path, saved):
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        ckpt.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"config.json: missing \(not a fewgen checkpoint\?\)"):
        ckpt.load(tmp_path / "empty")
    (saved / ckpt.MODEL_FILE).unlink()
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        ckpt.load(saved)


@pytest.mark.parametrize("content, match", [
    (b"{not json", r"config.json: corrupted \(not valid JSON\)"),
    (b"\xff\xfe garbage", r"config.json: corrupted \(not valid JSON\)"),
    (b"[1, 2]", "not a fewgen checkpoint"),
    (b'{"format": "something-else"}', "not a fewgen checkpoint"),
    (b"[" * 100000, r"corrupted \(not valid JSON\)"),
])
def test_garbage_config_json(saved, content, match):
    (saved / ckpt.CONFIG_FILE).write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        ckpt.load(saved)


def test_truncated_or_modified_weights_fail_the_integrity_check(saved):
    w = saved / ckpt.MODEL_FILE
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="integrity check failed"):
        ckpt.load(saved)
    flipped = bytearray(data)
    flipped[-3] ^= 0x01  # one bit of one weight: still a valid safetensors file
    w.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="integrity check failed .*corrupted or was modified"):
        ckpt.load(saved)


def test_truncated_weights_with_a_matching_hash_are_reported_as_corrupted(saved):
    w = saved / ckpt.MODEL_FILE
    w.write_bytes(w.read_bytes()[:50])
    edit_meta(saved, lambda m: m["sha256"].update({ckpt.MODEL_FILE: ckpt.sha256_of(w)}))
    with pytest.raises(CheckpointError, match="model.safetensors: corrupted weights file"):
        ckpt.load(saved)


def test_a_missing_hash_is_refused(saved):
    edit_meta(saved, lambda m: m.pop("sha256"))
    with pytest.raises(CheckpointError, match="no SHA-256 .* recorded"):
        ckpt.load(saved)
    edit_meta(saved, lambda m: m.update(sha256=["not", "a", "table"]))
    with pytest.raises(CheckpointError, match="no SHA-256"):
        ckpt.load(saved)


def test_other_format_version(saved):
    edit_meta(saved, lambda m: m.update(format_version=2))
    with pytest.raises(CheckpointError, match="format version 2 is not supported .*reads version 1"):
        ckpt.load(saved)


def test_other_model_family_or_mismatched_weights(saved):
    edit_meta(saved, lambda m: m["model"].update(family="gan"))
    with pytest.raises(CheckpointError, match="unknown model family 'gan'"):
        ckpt.load(saved)
    edit_meta(saved, lambda m: m["model"].update(family="text_lm"))  # weights of an image VAE
    with pytest.raises(CheckpointError, match="config.json"):
        ckpt.load(saved)
    edit_meta(saved, lambda m: m["model"].update(family="image_vae", kwargs={**m["model"]["kwargs"], "features": 20}))
    with pytest.raises(CheckpointError, match="weights do not match the model described in config.json"):
        ckpt.load(saved)
    edit_meta(saved, lambda m: m["model"].update(kwargs={**m["model"]["kwargs"], "hidden": -1}))
    with pytest.raises(CheckpointError, match="config.json"):
        ckpt.load(saved)
    edit_meta(saved, lambda m: m.update(model="image_vae"))
    with pytest.raises(CheckpointError, match="incomplete checkpoint metadata"):
        ckpt.load(saved)


def test_bad_config_inside_a_checkpoint(saved):
    edit_meta(saved, lambda m: m["config"]["train"].update(stepz=3))
    with pytest.raises(CheckpointError, match="unknown config key 'train.stepz'"):
        ckpt.load(saved)


# ----------------------------------------------------------------------------- crashes and disks

def test_crash_mid_write_keeps_the_previous_checkpoint(saved, monkeypatch):
    before = {f: (saved / f).read_bytes() for f in (ckpt.MODEL_FILE, ckpt.CONFIG_FILE)}

    def crashing_save_file(state, filename):
        Path(filename).write_bytes(b"half a safetensors file")  # partially written...
        raise RuntimeError("simulated crash")  # ...then the process dies

    monkeypatch.setattr(ckpt, "save_file", crashing_save_file)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ckpt.save(saved, tiny_model(seed=1), Config())
    assert {f: (saved / f).read_bytes() for f in before} == before
    assert sorted(p.name for p in saved.iterdir()) == sorted(before)  # no temp file left behind
    assert same_weights(ckpt.load(saved).model, tiny_model())

    monkeypatch.setattr(ckpt, "save_file", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C mid-write
        ckpt.save(saved, tiny_model(seed=1), Config())
    assert {f: (saved / f).read_bytes() for f in before} == before


def test_crash_between_weights_and_config_keeps_a_consistent_pair(saved, monkeypatch):
    """The weights are not put in place before config.json (with their hash) is ready."""
    monkeypatch.setattr(ckpt, "_versions", lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        ckpt.save(saved, tiny_model(seed=1), Config())
    assert same_weights(ckpt.load(saved).model, tiny_model())
    assert sorted(p.name for p in saved.iterdir()) == [ckpt.CONFIG_FILE, ckpt.MODEL_FILE]


def test_full_disk_is_reported_and_the_previous_checkpoint_kept(saved, monkeypatch):
    before = (saved / ckpt.MODEL_FILE).read_bytes()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "save_file", full)
    with pytest.raises(FewgenError, match="model.safetensors: no space left on device; the previous checkpoint is intact"):
        ckpt.save(saved, tiny_model(seed=1), Config())
    assert (saved / ckpt.MODEL_FILE).read_bytes() == before and len(list(saved.iterdir())) == 2
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(FewgenError, match="train_state.pt: no space left on device"):
        ckpt.save_train_state(saved, {"step": 1, "model": {}, "optim": {}})
    assert not (saved / ckpt.STATE_FILE).exists()


def test_unwritable_destination_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FewgenError, match="cannot write"):
        ckpt.save(blocker / "run", tiny_model(), Config())  # a file where a folder should be


# ----------------------------------------------------------------------------- untrusted files

class Payload:
    """Unpickling this creates a marker file: proof that loading executed code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_in_train_state_is_refused(saved, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"step": 3, "model": {}, "optim": {}, "payload": Payload(marker)}, saved / ckpt.STATE_FILE)
    with pytest.raises(CheckpointError, match="train_state.pt: corrupted resume state .*refused"):
        ckpt.load_train_state(saved)
    assert not marker.exists()


def test_corrupted_or_foreign_train_state(saved):
    f = saved / ckpt.STATE_FILE
    ckpt.save_train_state(saved, {"step": 3, "model": {"w": torch.ones(2)}, "optim": {}})
    assert ckpt.load_train_state(saved)["step"] == 3
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupted resume state"):
        ckpt.load_train_state(saved)
    torch.save({"weights": torch.ones(2)}, f)  # a tensor file, but not a resume state
    with pytest.raises(CheckpointError, match="not a fewgen resume state"):
        ckpt.load_train_state(saved)
    f.unlink()
    assert ckpt.load_train_state(saved) is None


def test_every_torch_load_uses_weights_only():
    """No unpickling that can run code anywhere in the package."""
    found = []
    for py in SRC.rglob("*.py"):
        tree = ast.parse(py.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name in ("pickle.load", "pickle.loads", "cPickle.load", "dill.load", "joblib.load"):
                found.append(f"{py.name}: {name}")
            if name.endswith("torch.load"):
                ok = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                         for k in node.keywords)
                if not ok:
                    found.append(f"{py.name}:{node.lineno}: torch.load without weights_only=True")
    assert not found, found
