"""Checkpoints are folders: ``config.json`` + ``model.safetensors`` (+ ``train_state.pt``).

``config.json`` holds the whole resolved config, the model family and constructor arguments,
library versions, a format version and the SHA-256 of ``model.safetensors`` (checked on load).
Nothing is pickled: weights are safetensors; the resume state is a tensor dict loaded with
``torch.load(..., weights_only=True)``. Every file is written atomically (temp file, fsync,
rename), so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from .digest import file_digest
from .config import Config, config_from_dict, config_to_dict
from .errors import CheckpointError, DataError, FewgenError
from .models import GenerativeModel, model_from_dict

FORMAT = "fewgen-checkpoint"
FORMAT_VERSION = 1
CONFIG_FILE, MODEL_FILE, STATE_FILE = "config.json", "model.safetensors", "train_state.pt"


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _write_error(path: Path, e: OSError) -> FewgenError:
    """The one-line error for a failed checkpoint write (a full disk is named as such)."""
    if e.errno in _DISK_FULL:
        return FewgenError(f"{path}: no space left on device; the previous checkpoint is intact")
    return FewgenError(f"{path}: cannot write ({e.strerror or e}); the previous checkpoint is intact")


def _prepare(path: Path, write: Callable[[Path], None]) -> Path:
    """Write a hidden temp file beside ``path`` with ``write(tmp)`` and flush it to disk."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        return Path(tmp)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise _write_error(path, e) from None
    except BaseException:  # a crash (or Ctrl-C) mid-write: the temp file goes, the old file stays
        Path(tmp).unlink(missing_ok=True)
        raise


def _commit(pairs: list[tuple[Path, Path]]) -> None:
    """Rename prepared temp files over their targets, back to back, then sync the folder."""
    try:
        for tmp, path in pairs:
            os.replace(tmp, path)
        fd = os.open(pairs[0][1].parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        for tmp, _ in pairs:
            tmp.unlink(missing_ok=True)
        raise _write_error(pairs[0][1], e) from None


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` via ``write(tmp)`` then an atomic rename: a crash mid-write leaves the
    previous file intact; a full disk is reported as a one-line FewgenError."""
    _commit([(_prepare(Path(path), write), Path(path))])


def sha256_of(path: Path) -> str:
    """The SHA-256 recorded in (and checked against) ``config.json``."""
    return file_digest(path, "sha256")


def _versions() -> dict[str, str]:
    import safetensors

    from . import __version__

    return {"fewgen": __version__, "torch": torch.__version__, "safetensors": safetensors.__version__}


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (with its weights), the config, facts about the run and stored tensors."""

    model: GenerativeModel
    config: Config
    path: Path
    info: dict[str, Any] = field(default_factory=dict)  # facts about the run: algo, step, adaptation (config.json "extra")
    tensors: dict[str, Tensor] = field(default_factory=dict)  # non-parameter tensors (e.g. a stored context)


def save(path: str | Path, model: GenerativeModel, config: Config, info: dict[str, Any] | None = None,
         tensors: dict[str, Tensor] | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write a checkpoint folder. ``info`` goes into config.json (under its historical key ``extra``);
    ``tensors`` are stored beside the weights under ``extra/``. ``dtype`` (e.g. ``torch.float16``,
    the zoo's) stores every floating tensor in that type; loading casts back to the model's."""
    path = Path(path)

    def stored(v: Tensor) -> Tensor:
        v = v.detach().contiguous().cpu()
        return v.to(dtype) if dtype is not None and v.is_floating_point() else v

    state = {k: stored(v) for k, v in model.state_dict().items()}
    for k, v in (tensors or {}).items():
        state["extra/" + k] = stored(v)
    # Both files are prepared first and then renamed back to back, so the folder never holds
    # half a file and config.json's hash always describes the weights beside it, except for
    # the instant between the two renames.
    weights = _prepare(path / MODEL_FILE, lambda p: save_file(state, str(p)))
    try:
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "model": {"family": model.family, "kwargs": model.config_dict()},
            "config": config_to_dict(config), "extra": info or {}, "versions": _versions(),
            "sha256": {MODEL_FILE: sha256_of(weights)},
        }
        text = json.dumps(meta, indent=2)
        cfg_tmp = _prepare(path / CONFIG_FILE, lambda p: p.write_text(text, encoding="utf-8"))
    except BaseException:
        weights.unlink(missing_ok=True)
        raise
    _commit([(weights, path / MODEL_FILE), (cfg_tmp, path / CONFIG_FILE)])
    return path


def _read_meta(path: Path) -> dict[str, Any]:
    """config.json of checkpoint folder ``path``, checked to be a fewgen checkpoint of this format."""
    cfg_file = path / CONFIG_FILE
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint folder (nor a zoo model: fewgen zoo list)")
    try:
        meta = json.loads(cfg_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{cfg_file}: missing (not a fewgen checkpoint?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise CheckpointError(f"{cfg_file}: corrupted (not valid JSON)") from None
    except OSError as e:
        raise CheckpointError(f"{cfg_file}: cannot read ({e.strerror or e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_file}: not a fewgen checkpoint")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{cfg_file}: checkpoint format version {meta.get('format_version')!r} "
                              f"is not supported (this fewgen reads version {FORMAT_VERSION})")
    return meta


def _verified_weights(path: Path, meta: dict[str, Any]) -> Path:
    """The weights file, its SHA-256 checked against the one config.json records."""
    weights, cfg_file = path / MODEL_FILE, path / CONFIG_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing")
    hashes = meta.get("sha256")
    expected = hashes.get(MODEL_FILE) if isinstance(hashes, dict) else None
    if not isinstance(expected, str):
        raise CheckpointError(f"{cfg_file}: no SHA-256 of {MODEL_FILE} recorded; the weights cannot be verified")
    try:
        actual = sha256_of(weights)
    except OSError as e:
        raise CheckpointError(f"{weights}: cannot read ({e.strerror or e})") from None
    if actual != expected.lower():
        raise CheckpointError(f"{weights}: integrity check failed (SHA-256 differs from config.json); "
                              "the file is corrupted or was modified")
    return weights


def load(path: str | Path) -> Checkpoint:
    """Rebuild everything from a checkpoint folder (or a zoo model's name, :mod:`fewgen.zoo`):
    no flag has to be repeated.

    Raises :class:`CheckpointError` for a missing folder or file, a corrupted or tampered
    weights file (hash mismatch), or a checkpoint of another format version.
    """
    from .zoo import resolve

    path = resolve(path)
    cfg_file = path / CONFIG_FILE
    meta = _read_meta(path)
    weights = _verified_weights(path, meta)
    model_meta = meta.get("model")
    if not isinstance(model_meta, dict) or not isinstance(model_meta.get("kwargs"), dict):
        raise CheckpointError(f"{cfg_file}: incomplete checkpoint metadata (no model description)")
    family = model_meta.get("family")
    try:
        config = config_from_dict(meta["config"])
        model = model_from_dict(family, model_meta["kwargs"])
        state = load_file(str(weights))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{cfg_file}: incomplete or invalid checkpoint metadata ({type(e).__name__}: "
                              f"{str(e)[:100]})") from None
    except SafetensorError as e:
        raise CheckpointError(f"{weights}: corrupted weights file ({e})") from None
    except DataError as e:  # a file the model refers to (a Hugging Face base folder): named by the error
        raise CheckpointError(f"{e} (needed by the checkpoint {path})") from None
    except FewgenError as e:
        raise CheckpointError(f"{cfg_file}: {e}") from None
    except RuntimeError as e:  # e.g. a negative size in a hand-edited config.json
        raise CheckpointError(f"{cfg_file}: the model it describes cannot be built ({str(e)[:100]})") from None
    # Half-precision storage (the zoo's) is read back in float32, the type every model computes in.
    state = {k: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for k, v in state.items()}
    tensors = {k[6:]: v for k, v in state.items() if k.startswith("extra/")}
    params = {k: v for k, v in state.items() if not k.startswith("extra/")}
    try:
        model.load_state_dict(params, strict=True)
    except RuntimeError:
        raise CheckpointError(f"{weights}: weights do not match the model described in config.json "
                              f"(family {family})") from None
    model.eval()
    info = meta.get("extra", {})
    if isinstance(info, dict) and info.get("adapted"):  # its stored context, checked against the model
        from .adaptation import stored_context

        stored_context(tensors, model, str(weights))
    return Checkpoint(model, config, path, info if isinstance(info, dict) else {}, tensors)


def check_data(ck: Checkpoint, modality: str, example_shape: tuple[int, ...], spec: str, name: str = "") -> None:
    """A one-line DataError when data of ``spec`` (its ``modality`` and ``example_shape``) cannot
    go through the checkpoint's model: another modality, or images of another size or channels."""
    from .support import a_model

    m, where = ck.model, name or str(ck.path)
    if m.modality != modality:
        raise DataError(f"{where} is {a_model(m.modality)}, but {spec} is {modality} data: give data of its kind")
    if modality == "image":
        want = (m.channels, m.image_size, m.image_size)
        if tuple(example_shape) != want:
            raise DataError(f"{where} takes images of shape {want} (channels, size, size), but {spec} gives "
                            f"{tuple(example_shape)}; set data.image_size / data.channels as the checkpoint was trained")


def save_train_state(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically write the resume state (tensors and plain numbers only)."""
    atomic_write(Path(path) / STATE_FILE, lambda p: torch.save(state, p))


def load_train_state(path: str | Path) -> dict[str, Any] | None:
    """The resume state, loaded without executing code (``weights_only=True``); None if absent."""
    f = Path(path) / STATE_FILE
    if not f.exists():
        return None
    try:
        state = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a damaged or unsafe file
        detail = ("it holds objects other than tensors and numbers; refused"
                  if isinstance(e, pickle.UnpicklingError) else type(e).__name__)
        raise CheckpointError(f"{f}: corrupted resume state ({detail})") from None
    missing = [k for k in ("step", "model", "optim") if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{f}: not a fewgen resume state (no {', '.join(missing)})")
    return state
