"""A command imports what it needs: the parser builds only the named subcommand's arguments."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import make_image_folder
from fewgen.cli import COMMANDS, build_parser, named_command

# Modules `fewgen sample` has no use for (other commands' dependencies).
NOT_FOR_SAMPLE = ("fewgen.bench", "fewgen.serve", "fewgen.training", "fewgen.evaluate", "gradio", "matplotlib",
                  "transformers", "scipy", "torch.utils.tensorboard")


def imported_after(argv: list[str], modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after ``fewgen.cli.main(argv)``."""
    code = ("import sys\nfrom fewgen.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print('imported:' + ','.join(m for m in {modules!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True).stdout
    return [m for m in out.strip().splitlines()[-1].removeprefix("imported:").split(",") if m]


def test_named_command():
    assert named_command(["sample", "runs/x", "--n", "4"]) == "sample"
    assert named_command(["--version"]) == "" and named_command([]) == ""
    assert named_command(["--help", "export-hf"]) == "export-hf"


def test_the_lazy_parser_reads_and_shows_what_the_full_one_does():
    assert build_parser("").format_help() == build_parser().format_help()
    argv = ["sample", "runs/x", "--support", "a.png", "--n", "4", "--set", "train.inner_select=heldout"]
    assert vars(build_parser("sample").parse_args(argv)) == vars(build_parser().parse_args(argv))
    for name in COMMANDS:
        full, lazy = build_parser(), build_parser(name)
        assert lazy._subparsers._group_actions[0].choices[name].format_help() == \
            full._subparsers._group_actions[0].choices[name].format_help(), name


@pytest.mark.parametrize("argv", [["--help"], ["sample", "--help"], ["adapt", "--help"], ["train", "--help"]])
def test_help_does_not_import_torch(argv):
    assert imported_after(argv, ("torch",)) == []


def test_sample_imports_no_other_commands_dependencies(tmp_path, one_thread):
    from fewgen.config import Config, apply_overrides
    from fewgen.training import train

    data = make_image_folder(tmp_path / "imgs", tasks=6, per_task=6, size=8)
    cfg = apply_overrides(Config(), [f"data.spec=folder:{data}", "data.image_size=8", "model.hidden=4",
                                     "model.latent=4", "model.context=8", "train.steps=1", "train.meta_batch=2",
                                     "train.shots=2", "train.queries=2", "train.val_every=1", "train.val_tasks=1"])
    train(cfg, tmp_path / "run", progress=False)
    argv = ["sample", str(tmp_path / "run"), "--support", str(data / "task00"), "--n", "4",
            "--out", str(tmp_path / "grid.png")]
    assert imported_after(argv, NOT_FOR_SAMPLE) == []
    assert (tmp_path / "grid.png").exists()


def test_a_command_whose_module_cannot_import_is_listed_and_says_why(monkeypatch, capsys):
    import sys

    from fewgen.cli import main

    monkeypatch.setitem(sys.modules, "fewgen.cli.serve", None)  # its import now fails, as in a broken install
    assert "serve" in build_parser()._subparsers._group_actions[0].choices
    for argv in (["serve", "runs/x", "--port", "8080"], ["serve", "--help"], ["serve"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("fewgen: error: fewgen serve cannot run: "), err
        assert "fewgen.cli.serve" in err, err
