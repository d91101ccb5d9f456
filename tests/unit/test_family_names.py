"""Family names stay inside ``fewgen.models`` (issue 25, item 3): code elsewhere asks the model
(``sample_options``, ``sampler_variants``) or a table of ``models`` (``FAMILIES``, ``TEXT_BASELINE``,
``COUNTED_FAMILIES``) instead of testing a family's name.

The check reads the source (``ast``): outside ``models/`` no string constant may be a family's
name (docstrings, comments and longer help texts may mention one), except the configured
default in ``config.py``, and no ``family`` may be compared with string constants.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fewgen
from fewgen.models import FAMILIES

ROOT = Path(fewgen.__file__).parent
DEFAULT_ALLOWED = {"config.py"}  # ModelConfig.family's default: the family a config names by default


def _docstring_nodes(tree: ast.AST) -> set[int]:
    """The ids of the docstring constants (module, class and function docstrings)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _is_family(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "family") or (isinstance(node, ast.Name) and node.id == "family")


def _strings(node: ast.expr) -> bool:
    """A string constant, or a tuple / list / set of them."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts) and all(_strings(e) for e in node.elts)
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def findings(source: str, literals_allowed: bool = False) -> list[str]:
    """``line: what`` for each family name constant and each comparison of ``family`` with strings."""
    tree = ast.parse(source)
    docs = _docstring_nodes(tree)
    out = []
    for node in ast.walk(tree):
        if (not literals_allowed and isinstance(node, ast.Constant) and node.value in FAMILIES
                and id(node) not in docs):
            out.append(f"{node.lineno}: the family name {node.value!r}")
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_family(s) for s in sides) and any(_strings(s) for s in sides):
                out.append(f"{node.lineno}: a family compared with a name")
    return out


def test_the_check_finds_a_family_name_test():
    assert findings("if model.family == 'image_diffusion':\n    pass\n")
    assert findings("x = {'family': 'text_ngram'}\n")
    assert findings("ok = family in ('a', 'b')\n", literals_allowed=True)
    assert not findings('"""Mentions image_vae and text_ngram."""\nhelp = "image_diffusion: steps"\n')
    assert not findings("skip = model.family in COUNTED_FAMILIES\n")


def test_no_family_name_is_tested_outside_models():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "models":
            continue
        source = path.read_text(encoding="utf-8")
        bad += [f"{rel}:{f}" for f in findings(source, literals_allowed=str(rel) in DEFAULT_ALLOWED)]
    assert not bad, "\n".join(bad)
