"""The reliability contract of every command that reads user files (issue 23).

Each command is one row of ``COMMANDS``: a good command line with slots (``{ckpt}``,
``{support}``, ``{data}``, ``{out}``, a float option, ...). Each slot kind has a table of damaged
inputs (``DAMAGES``: missing, empty, truncated, wrong type, wrong shape, non-UTF-8, non-finite,
wrong modality, an output over a checkpoint or over the command's own input). Every
(command, slot, damage) must end with exit status 2 and exactly one ``fewgen: error:`` line that
names the damaged file or value, no traceback, and no file changed anywhere in the workspace
except under the command's own new output. Adding a command adds one row.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
from conftest import cli_in_process, make_image_folder

from fewgen import checkpoint as ckpt
from fewgen.cli import COMMANDS as CLI_COMMANDS
from fewgen.cli import main

TINY = ["--set", "data.image_size=8", "--set", "model.hidden=4", "--set", "model.latent=4", "--set",
        "model.context=8", "--set", "model.extra.features=16", "--set", "train.meta_batch=4"]
WORDS = ["kato", "hundo", "mondo", "ruĝa", "blua", "verda", "flava", "nigra", "blanka", "ora", "ŝipo", "ĝardeno"]


# ----------------------------------------------------------------------------- the workspace
def _cli(args: list[str]) -> None:
    code = main([str(a) for a in args])
    assert code == 0, args


def _rehash(folder: Path) -> None:
    """Record the weights' new SHA-256 in config.json (a damage made with a tool, not a bit flip)."""
    meta = json.loads((folder / "config.json").read_text())
    meta["sha256"]["model.safetensors"] = ckpt.sha256_of(folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(meta))


def _edit_tensors(src: Path, dst: Path, edit: Callable[[dict], None]) -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    state = load_file(str(dst / "model.safetensors"))
    edit(state)
    save_file(state, str(dst / "model.safetensors"))
    _rehash(dst)
    return dst


def _widen_first_context(state: dict) -> None:
    key = next(k for k in sorted(state) if k.startswith("extra/context."))
    state[key] = torch.cat([state[key], state[key]], -1)


def _widen_first_weight(state: dict) -> None:
    key = next(k for k in sorted(state) if not k.startswith("extra/") and state[k].dim() == 2)
    state[key] = torch.cat([state[key], state[key]], -1)


def _copy_with(src: Path, dst: Path, name: str, data: bytes) -> Path:
    shutil.copytree(src, dst)
    (dst / name).write_bytes(data)
    return dst


@dataclass
class Workspace:
    root: Path
    good: dict[str, Path]

    def new(self, name: str) -> Path:
        return self.root / "outputs" / name


def build_workspace(root: Path) -> Workspace:
    """Good inputs of every kind (tiny models trained here) and damaged copies of them."""
    imgs = make_image_folder(root / "imgs", tasks=8, per_task=8, size=8)
    texts = root / "texts"
    texts.mkdir()
    for t in range(8):
        (texts / f"lang{t}.txt").write_text("\n".join(w[t % 3:] + w[: t % 3] for w in WORDS) + "\n", encoding="utf-8")
    _cli(["train", "--data", f"folder:{imgs}", "--out", root / "image_ck", *TINY, "--steps", "2", "--quiet"])
    _cli(["train", "--data", f"text:{texts}", "--set", "model.family=text_ngram", "--out", root / "text_ck",
          "--steps", "1", "--quiet"])
    _cli(["adapt", root / "image_ck", "--support", imgs / "task00", "--out", root / "adapted_ck"])
    (root / "support.txt").write_text("kato\nhundo\nmondo\n", encoding="utf-8")
    (root / "preset.toml").write_text("[train]\nlr = 0.001\n", encoding="utf-8")
    png = (imgs / "task00" / "0.png").read_bytes()
    bad = root / "bad"
    bad.mkdir()
    files = {"empty.txt": b"", "blank.txt": b"\n  \n\n", "latin1.txt": b"kato\ncaf\xe9\n", "half.png": png[: len(png) // 2],
             "notes.txt": b"kato\n", "nan.toml": b"[train]\nlr = nan\n", "half.toml": b"[train\nlr = ",
             "latin1.toml": b"[train]\nalgo = \"caf\xe9\"\n"}
    for name, data in files.items():
        (bad / name).write_bytes(data)
    for name in ("empty_dir", "empty_run"):
        (bad / name).mkdir()
    (bad / "text_latin1").mkdir()
    (bad / "text_latin1" / "a.txt").write_bytes(b"kato\ncaf\xe9\n")
    ck = root / "image_ck"
    cfg = (ck / "config.json").read_bytes()
    weights = (ck / "model.safetensors").read_bytes()
    damaged = {
        "ck_truncated_weights": _copy_with(ck, bad / "ck_truncated_weights", "model.safetensors", weights[: len(weights) // 2]),
        "ck_truncated_config": _copy_with(ck, bad / "ck_truncated_config", "config.json", cfg[: len(cfg) // 2]),
        "ck_latin1_config": _copy_with(ck, bad / "ck_latin1_config", "config.json", cfg.replace(b'"glyphs"', b'"caf\xe9"', 1)
                                       if b'"glyphs"' in cfg else cfg[:-1] + b"\xe9}"),
        "ck_nan_config": _copy_with(ck, bad / "ck_nan_config", "config.json",
                                    cfg.replace(b'"lr": 0.001', b'"lr": NaN', 1)),
        "ck_wrong_shape": _edit_tensors(ck, bad / "ck_wrong_shape", _widen_first_weight),
        "adapted_wrong_shape": _edit_tensors(root / "adapted_ck", bad / "adapted_wrong_shape", _widen_first_context),
        "run_latin1": _copy_with(ck, bad / "run_latin1", "metrics.jsonl", b'{"step": 1, "loss": 1.0, "time": 0.1}\n\xff\xfe\n'),
        "run_truncated": _copy_with(ck, bad / "run_truncated", "metrics.jsonl", b'{"step": 1, "loss": 1.0, "time": 0.1}\n{"st'),
        "run_bad_state": _copy_with(ck, bad / "run_bad_state", "train_state.pt", b"PK\x03\x04 not a torch file"),
        "run_bad_config": _copy_with(ck, bad / "run_bad_config", "resolved_config.json", b'{"train": {"lr": '),
    }
    assert b"NaN" in (damaged["ck_nan_config"] / "config.json").read_bytes()
    from fewgen.zoo.build import export

    export(ck, root / "zoo" / "tiny")  # the workspace's zoo (run_in_process points fewgen.zoo at it)
    (root / "zoo" / "tiny" / "card.md").write_text("# tiny\n\nA tiny model.\n", encoding="utf-8")
    damaged |= hf_folders(bad)
    good = {"imgs": imgs, "texts": texts, "image_ck": ck, "text_ck": root / "text_ck", "adapted_ck": root / "adapted_ck",
            "support_png": imgs / "task00" / "0.png", "support_dir": imgs / "task00", "support_txt": root / "support.txt",
            "toml": root / "preset.toml", **{k: bad / k for k in files}, "empty_dir": bad / "empty_dir",
            "empty_run": bad / "empty_run", "text_latin1": bad / "text_latin1", **damaged}
    return Workspace(root, good)


def hf_folders(bad: Path) -> dict[str, Path]:
    """A tiny Hugging Face folder and damaged copies (none without the hf extra)."""
    from importlib.util import find_spec

    if find_spec("transformers") is None:
        return {}
    import hf_tiny
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    hf = hf_tiny.folder("gpt2", root=bad / "hf")
    weights = (hf / "model.safetensors").read_bytes()
    out = {"hf": hf, "hf_truncated": _copy_with(hf, bad / "hf_truncated", "model.safetensors", weights[: len(weights) // 2]),
           "hf_bad_tokenizer": _copy_with(hf, bad / "hf_bad_tokenizer", "tokenizer.json", b'{"version": "1.0", '),
           "hf_bin_only": _copy_with(hf, bad / "hf_bin_only", "pytorch_model.bin", b"pickle")}
    (out["hf_bin_only"] / "model.safetensors").unlink()
    shutil.copytree(hf, bad / "hf_no_tokens")
    empty = Tokenizer(models.BPE())
    empty.add_special_tokens(["<|endoftext|>"])
    PreTrainedTokenizerFast(tokenizer_object=empty, bos_token="<|endoftext|>",
                            eos_token="<|endoftext|>").save_pretrained(str(bad / "hf_no_tokens"))
    return out | {"hf_no_tokens": bad / "hf_no_tokens"}


# ----------------------------------------------------------------------------- damaged inputs
# slot kind -> damage name -> (the slot's value, the text the error line must contain); values
# are built from the workspace's good paths ``g``.
Damage = Callable[[dict[str, Path]], tuple[str, str]]


def _named(key: str) -> Damage:
    return lambda g: (str(g[key]), str(g[key]))


def _nope(g: dict[str, Path]) -> tuple[str, str]:
    return str(g["imgs"].parent / "nope"), "nope"


DAMAGES: dict[str, dict[str, Damage]] = {
    "ckpt": {  # an image checkpoint folder
        "missing": _nope,
        "empty": _named("empty_dir"),
        "wrong_type": _named("support_png"),
        "truncated_weights": lambda g: (str(g["ck_truncated_weights"]), "model.safetensors"),
        "truncated_config": lambda g: (str(g["ck_truncated_config"]), "config.json"),
        "non_utf8_config": lambda g: (str(g["ck_latin1_config"]), "config.json"),
        "non_finite_config": lambda g: (str(g["ck_nan_config"]), "config.json"),
        "wrong_shape_weights": lambda g: (str(g["ck_wrong_shape"]), "model.safetensors"),
        "wrong_shape_context": lambda g: (str(g["adapted_wrong_shape"]), "model.safetensors"),
    },
    "image_support": {
        "missing": _nope,
        "empty": _named("empty_dir"),
        "truncated": _named("half.png"),
        "wrong_type": _named("notes.txt"),
    },
    "text_support": {
        "missing": _nope,
        "empty": _named("empty.txt"),
        "blank_lines": _named("blank.txt"),
        "non_utf8": _named("latin1.txt"),
        "wrong_type": _named("support_png"),
        "no_text_files": _named("support_dir"),
    },
    "image_data": {  # a data spec of image folders
        "missing": lambda g: (f"folder:{g['imgs'].parent / 'nope'}", "nope"),
        "empty": lambda g: (f"folder:{g['empty_dir']}", str(g["empty_dir"])),
    },
    "text_data": {
        "missing": lambda g: (f"text:{g['imgs'].parent / 'nope'}", "nope"),
        "empty": lambda g: (f"text:{g['empty_dir']}", str(g["empty_dir"])),
        "non_utf8": lambda g: (f"text:{g['text_latin1']}", "a.txt"),
    },
    "hf_folder": {  # model.extra.path of model.family=hf_causal_lm
        "missing": _nope,
        "empty": _named("empty_dir"),
        "truncated_weights": lambda g: (str(g["hf_truncated"]), "model.safetensors"),
        "damaged_tokenizer": lambda g: (str(g["hf_bad_tokenizer"]), "tokenizer.json"),
        "tokenizer_without_tokens": lambda g: (str(g["hf_no_tokens"]), "no tokens"),
        "pickled_weights_only": lambda g: (str(g["hf_bin_only"]), "safetensors only"),
    },
    "toml": {
        "missing": lambda g: (str(g["imgs"].parent / "nope.toml"), "nope.toml"),
        "truncated": _named("half.toml"),
        "non_utf8": _named("latin1.toml"),
        "non_finite": _named("nan.toml"),
        "wrong_type": _named("empty_dir"),
    },
    "run": {  # a training run folder (plot, train --resume)
        "missing": _nope,
        "empty": _named("empty_run"),
        "non_utf8_metrics": lambda g: (str(g["run_latin1"]), "metrics.jsonl"),
        "truncated_metrics": lambda g: (str(g["run_truncated"]), "metrics.jsonl"),
    },
    "resume": {
        "missing": _nope,
        "empty": _named("empty_run"),
        "damaged_state": lambda g: (str(g["run_bad_state"]), "train_state.pt"),
        "damaged_config": lambda g: (str(g["run_bad_config"]), "resolved_config.json"),
    },
    "zoo_name": {"unknown": lambda g: ("no-such-model", "no-such-model")},
    "float": {  # ("-inf" as a separate argument is an option to argparse: "expected one argument")
        "nan": lambda g: ("nan", "nan"),
        "inf": lambda g: ("inf", "inf"),
        "overflow": lambda g: ("1e999", "1e999"),
    },
    "out_folder": {
        "over_a_checkpoint": lambda g: (str(g["image_ck"]), str(g["image_ck"])),
        "over_other_files": lambda g: (str(g["support_dir"]), str(g["support_dir"])),
        "onto_a_file": _named("support_txt"),
    },
    "out_file": {
        "over_checkpoint_weights": lambda g: (str(g["image_ck"] / "model.safetensors"), "model.safetensors"),
        "over_checkpoint_config": lambda g: (str(g["image_ck"] / "config.json"), "config.json"),
        "onto_a_folder": _named("empty_dir"),
    },
}


DAMAGES["picture_file"] = {**DAMAGES["out_file"], "not_a_picture_name": lambda g: (str(g["imgs"].parent / "grid.xyz"),
                                                                                    "grid.xyz")}
# A checkpoint (or data) given with data (or a checkpoint) of the other modality is damage too.
DAMAGES["ckpt_with_data"] = {**DAMAGES["ckpt"], "wrong_modality": _named("text_ck")}
DAMAGES["data_for_ckpt"] = {**DAMAGES["image_data"],
                            "wrong_modality": lambda g: (f"text:{g['texts']}", f"text:{g['texts']}")}


# ----------------------------------------------------------------------------- the commands
@dataclass
class Command:
    """A good command line; ``slots`` maps a placeholder to its kind in DAMAGES (``{out}`` is the
    case's own new output path; ``{own_input}`` rows check that the output cannot be an input)."""

    argv: list[str]
    slots: dict[str, str]
    defaults: dict[str, str]  # placeholder -> key of the good value in the workspace (or a literal)
    own_input: str = ""  # a placeholder whose value, given as --out, must be refused


BENCH = ["--methods", "amortized", "--shots", "1", "--steps", "0", "--train-steps", "1", "--eval-tasks", "2", *TINY]
COMMANDS: dict[str, Command] = {
    "train": Command(["train", "--data", "{data}", "--out", "{out}", "--config", "{toml}", *TINY, "--steps", "1",
                      "--max-seconds", "{seconds}", "--quiet"],
                     {"{data}": "image_data", "{toml}": "toml", "{seconds}": "float", "{out}": "out_folder"},
                     {"{data}": "folder:{imgs}", "{toml}": "toml", "{seconds}": "60"}),
    "train --resume": Command(["train", "--out", "{run}", "--resume", "--quiet"], {"{run}": "resume"},
                              {"{run}": "image_ck"}),
    "train (text)": Command(["train", "--data", "{data}", "--out", "{out}", "--set", "model.family=text_ngram",
                             "--steps", "1", "--quiet"], {"{data}": "text_data"}, {"{data}": "text:{texts}"}),
    "train (hf)": Command(["train", "--data", "{data}", "--algo", "reptile", "--set", "model.family=hf_causal_lm",
                           "--set", "model.extra.path={hf}", "--out", "{out}", "--steps", "1", "--quiet"],
                          {"{hf}": "hf_folder"}, {"{hf}": "hf", "{data}": "text:{texts}"}),
    "adapt": Command(["adapt", "{ckpt}", "--support", "{support}", "--lr", "{lr}", "--out", "{out}"],
                     {"{ckpt}": "ckpt_with_data", "{support}": "image_support", "{lr}": "float", "{out}": "out_folder"},
                     {"{ckpt}": "image_ck", "{support}": "support_dir", "{lr}": "0.01"}, own_input="{ckpt}"),
    "adapt (text)": Command(["adapt", "{ckpt}", "--support", "{support}", "--out", "{out}"],
                            {"{support}": "text_support"}, {"{ckpt}": "text_ck", "{support}": "support_txt"},
                            own_input="{support}"),
    "sample": Command(["sample", "{ckpt}", "--support", "{support}", "--n", "2", "--guidance", "{guidance}",
                       "--out", "{out}.png"],
                      {"{ckpt}": "ckpt_with_data", "{support}": "image_support", "{guidance}": "float",
                       "{out}.png": "picture_file"},
                      {"{ckpt}": "image_ck", "{support}": "support_dir", "{guidance}": "1"}),
    "sample (text)": Command(["sample", "{ckpt}", "--support", "{support}", "--n", "2", "--temperature", "{t}",
                              "--out", "{out}.txt"],
                             {"{support}": "text_support", "{t}": "float"},
                             {"{ckpt}": "text_ck", "{support}": "support_txt", "{t}": "1"}, own_input="{support}"),
    "sample (adapted)": Command(["sample", "{ckpt}", "--n", "2", "--out", "{out}.png"], {"{ckpt}": "ckpt"},
                                {"{ckpt}": "adapted_ck"}),
    "eval": Command(["eval", "{ckpt}", "--data", "{data}", "--max-tasks", "2", "--shots", "1", "--lr", "{lr}",
                     "--json", "{out}.json"],
                    {"{ckpt}": "ckpt_with_data", "{data}": "data_for_ckpt", "{lr}": "float", "{out}.json": "out_file"},
                    {"{ckpt}": "image_ck", "{data}": "folder:{imgs}", "{lr}": "0.01"}),
    "bench": Command(["bench", "--data", "{data}", "--ckpt", "amortized={ckpt}", *BENCH, "--train-seconds", "{s}",
                      "--out", "{out}", "--quiet"],
                     {"{ckpt}": "ckpt_with_data", "{data}": "data_for_ckpt", "{s}": "float", "{out}": "out_folder"},
                     {"{ckpt}": "image_ck", "{data}": "folder:{imgs}", "{s}": "0"}, own_input="{ckpt}"),
    "data show": Command(["data", "show", "{data}", "--out", "{out}.png"],
                         {"{data}": "image_data", "{out}.png": "picture_file"}, {"{data}": "folder:{imgs}"}),
    "plot": Command(["plot", "{run}", "--out", "{out}.png"], {"{run}": "run", "{out}.png": "picture_file"},
                    {"{run}": "image_ck"}),
    "export-hf": Command(["export-hf", "--data", "{data}", "--out", "{out}", "--steps", "1", "--width", "8",
                          "--layers", "1", "--vocab", "257", "--max-seconds", "{s}"],
                         {"{data}": "text_data", "{out}": "out_folder", "{s}": "float"},
                         {"{data}": "text:{texts}", "{s}": "0"}),
    "demo": Command(["demo", "--out", "{out}", "--seconds", "{s}", "--quiet"], {"{out}": "out_folder", "{s}": "float"},
                    {"{s}": "1"}),
    "zoo show": Command(["zoo", "show", "{name}"], {"{name}": "zoo_name"}, {"{name}": "tiny"}),
    "zoo build": Command(["zoo", "build", "{name}", "--out", "{out}", "--quiet"],
                         {"{name}": "zoo_name", "{out}": "out_folder"}, {"{name}": "tiny"}),
    "serve": Command(["serve", "{ckpt}", "--max-mb", "{mb}"], {"{ckpt}": "ckpt", "{mb}": "float"},
                     {"{ckpt}": "image_ck", "{mb}": "1"}),
}
NEEDS = {"export-hf": ("transformers", "tokenizers"), "serve": ("gradio",), "train (hf)": ("transformers", "peft")}


def cases() -> list[tuple[str, str, str]]:
    out = []
    for name, cmd in COMMANDS.items():
        for slot, kind in cmd.slots.items():
            out += [(name, slot, damage) for damage in DAMAGES[kind]]
        if cmd.own_input:
            out.append((name, cmd.own_input, "out_is_own_input"))
    return out


def good_values(ws: Workspace, cmd: Command, out: Path) -> dict[str, str]:
    """Placeholder -> its good value for a row (``{out}``: the case's own new output)."""
    g = {k: str(v) for k, v in ws.good.items()}
    return {"{out}": str(out), **{ph: (g[v] if v in g else v.format(**g)) for ph, v in cmd.defaults.items()}}


def fill(argv: list[str], values: dict[str, str]) -> list[str]:
    """A token that is a placeholder takes its value whole; others get placeholders substituted."""
    filled = []
    for a in argv:
        if a not in values:
            for ph, v in values.items():
                a = a.replace(ph, v)
        filled.append(values.get(a, a))
    return filled


def command_line(ws: Workspace, name: str, slot: str, damage: str, out: Path) -> tuple[list[str], str]:
    """The argv of one case and the text its error line must name."""
    cmd = COMMANDS[name]
    values = good_values(ws, cmd, out)
    if damage == "out_is_own_input":
        expected = values[slot]
        values[next(a for a in cmd.argv if "{out}" in a)] = expected
    else:
        values[slot], expected = DAMAGES[cmd.slots[slot]][damage](ws.good)
    return fill(cmd.argv, values), expected


# ----------------------------------------------------------------------------- the contract
@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    torch.set_num_threads(1)
    ws = build_workspace(tmp_path_factory.mktemp("reliability"))
    WORKSPACE_ZOO[:] = [ws.root / "zoo"]
    return ws


def snapshot(root: Path, skip: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` except under ``skip`` (the case's own output)."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and skip not in p.parents and not str(p).startswith(str(skip))}


WORKSPACE_ZOO: list[Path] = []  # the workspace's zoo folder, once built


def run_in_process(argv: list[str], capsys, monkeypatch) -> subprocess.CompletedProcess:
    """The command in this process, with serve stopped where it would start its server."""
    import fewgen.serve
    import fewgen.zoo

    def launched(*a, **k):  # serve got past loading: the damage went unnoticed
        raise AssertionError("serve would have started")

    monkeypatch.setattr(fewgen.serve, "build_app", launched)
    if WORKSPACE_ZOO:
        monkeypatch.setattr(fewgen.zoo, "ZOO_DIR", WORKSPACE_ZOO[0])
    return cli_in_process(argv, capsys, monkeypatch)


@pytest.mark.parametrize("name,slot,damage", cases(), ids=[f"{n}|{s}|{d}" for n, s, d in cases()])
def test_damaged_input_is_one_line_exit_2_and_nothing_changes(ws, name, slot, damage, capsys, monkeypatch):
    from importlib.util import find_spec

    missing = [m for m in NEEDS.get(name, NEEDS.get(name.split()[0], ())) if find_spec(m) is None]
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)}")
    out = ws.new(f"{name}-{slot}-{damage}".replace(" ", "_").replace("{", "").replace("}", ""))
    argv, expected = command_line(ws, name, slot, damage, out)
    before = snapshot(ws.root, out)
    r = run_in_process(argv, capsys, monkeypatch)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (argv, r.returncode, r.stderr[-2000:])
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("fewgen: error: ") or lines[0].startswith(f"fewgen {argv[0]}: error: "), lines[0]
    assert expected in lines[0], (expected, lines[0])
    assert snapshot(ws.root, out) == before, "a file outside the command's own output changed"


def test_every_command_has_a_row():
    assert {n.split()[0] for n in COMMANDS} == set(CLI_COMMANDS)


def test_the_good_command_lines_work(ws, capsys, monkeypatch):
    """The rows are good command lines but for their damage: each runs (serve is stopped at launch)."""
    for name in ("adapt", "sample", "sample (text)", "eval", "plot", "data show"):
        argv = fill(COMMANDS[name].argv, good_values(ws, COMMANDS[name], ws.new(f"good-{name}".replace(" ", "_"))))
        r = run_in_process(argv, capsys, monkeypatch)
        assert r.returncode == 0, (name, r.stderr)


def test_overwrite_replaces_an_output_and_resume_continues_a_run(ws, capsys, monkeypatch):
    """The refusals have their way out: --overwrite replaces the command's own kind of output,
    train --resume continues its run; the command's input is never touched."""
    g = ws.good
    run = ws.new("run")
    train = ["train", "--data", f"folder:{g['imgs']}", "--out", str(run), *TINY, "--steps", "2", "--quiet"]
    assert run_in_process(train, capsys, monkeypatch).returncode == 0
    again = run_in_process(train, capsys, monkeypatch)
    assert again.returncode == 2 and "--resume to continue it, or --overwrite" in again.stderr
    resumed = run_in_process(["train", "--out", str(run), "--resume", "--steps", "3", "--quiet"], capsys, monkeypatch)
    assert resumed.returncode == 0 and ckpt.load_train_state(run)["step"] == 3
    replaced = run_in_process([*train, "--overwrite"], capsys, monkeypatch)
    assert replaced.returncode == 0 and ckpt.load_train_state(run)["step"] == 2  # a new run, not the old one's state

    before = snapshot(ws.root, ws.new("adapted"))
    adapt = ["adapt", str(run), "--support", str(g["support_dir"]), "--out", str(ws.new("adapted"))]
    assert run_in_process(adapt, capsys, monkeypatch).returncode == 0
    refused = run_in_process(adapt, capsys, monkeypatch)
    assert refused.returncode == 2 and "already holds a fewgen checkpoint" in refused.stderr
    assert run_in_process([*adapt, "--overwrite"], capsys, monkeypatch).returncode == 0
    assert ckpt.load(ws.new("adapted")).info["adapted"]
    assert snapshot(ws.root, ws.new("adapted")) == before  # the input run is untouched
