"""The ``fewgen`` command line: thin; each subcommand parses, builds a config, calls the library.

Problems with the user's input print one line ``fewgen: error: ...`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import errno
import sys
import warnings
from typing import Callable

from ..errors import FewgenError

COMMANDS = ("train", "adapt", "sample", "eval", "bench", "data", "plot", "export-hf", "demo", "serve", "zoo")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``fewgen train: error: ... (see fewgen train --help)``."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``fewgen`` parser. Every subcommand is listed with its help; with ``command`` only
    that subcommand gets its arguments (None: all do), so that a command imports what it needs
    and no other's dependencies (torch, Gradio, ...) at parse time."""
    from importlib import import_module

    parser = _Parser(
        prog="fewgen",
        description="Meta-generation: meta-train generators over many tasks, then learn a new "
                    "distribution from a few examples and sample from it.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"fewgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = import_module(f".{name.replace('-', '_')}", __name__)
        except ImportError as e:  # a command imports its extras (gradio, ...) in run(): this is a broken install
            # It takes every argument, --help too (no option prefix an argv can hold), and run() says why it cannot run.
            p = sub.add_parser(name, help=f"(cannot run: {one_line(str(e))})", add_help=False, prefix_chars="\0")
            p.add_argument("arguments", nargs="*")
            p.set_defaults(run=_cannot_run(name, e))
            continue
        p = sub.add_parser(name, help=mod.HELP, description=mod.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if command is None or name == command:
            mod.add_arguments(p)
        p.set_defaults(run=mod.run)
    return parser


def _cannot_run(name: str, error: ImportError) -> Callable[[argparse.Namespace], int]:
    """The ``run`` of command ``name`` whose module failed to import with ``error``: whatever its
    arguments, a one-line error naming the module that is missing."""

    def run(args: argparse.Namespace) -> int:
        raise FewgenError(f"fewgen {name} cannot run: {error} (a broken installation: reinstall fewgen)")

    return run


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fewgen`` script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(named_command(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    warnings.formatwarning = lambda msg, cat, *a, **k: f"fewgen: warning: {msg}\n"
    try:
        return int(args.run(args) or 0)
    except FewgenError as e:
        print(f"fewgen: error: {one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # the environment: a full disk, a folder that cannot be written, ...
        where = f"{e.filename}: " if e.filename else ""
        what = "no space left on device" if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)) \
            else (e.strerror or str(e))
        print(f"fewgen: error: {one_line(where + what)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fewgen: interrupted", file=sys.stderr)
        return 130


def named_command(argv: list[str]) -> str:
    """The subcommand an argument list names: its first argument that is not an option ('' if
    none; the top-level options, --help and --version, take no value)."""
    return next((a for a in argv if not a.startswith("-")), "")


def one_line(message: str) -> str:
    """An error message on exactly one line (a value with a newline in it stays visible)."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def entry() -> None:  # pragma: no cover
    sys.exit(main())
