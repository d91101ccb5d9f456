"""House style: a function fits on a screen. No function in src/fewgen is longer than 60 lines
(the CLI's argument tables, ``add_arguments``, excepted: a list of options, not logic)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "fewgen"
LIMIT = 60


def long_functions(root: Path, limit: int = LIMIT) -> list[str]:
    """``file:line name (lines)`` of every function longer than ``limit`` lines under ``root``."""
    found = []
    for f in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name != "add_arguments":
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{f.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_longer_than_a_screen():
    assert long_functions(SRC) == []


def test_the_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "m.py").write_text(f"def long():\n{body}\n", encoding="utf-8")
    assert long_functions(tmp_path) == [f"m.py:1 long ({LIMIT + 1} lines)"]
