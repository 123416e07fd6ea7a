"""Scripts are entry points: none imports another (shared code lives in a package module)."""

from __future__ import annotations

import ast
import pathlib

import pytest

SCRIPTS = pathlib.Path(__file__).resolve().parents[2] / "scripts"
NAMES = {p.stem for p in SCRIPTS.rglob("*.py")}


def _imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("script", sorted(SCRIPTS.rglob("*.py")), ids=lambda p: p.name)
def test_a_script_imports_no_other_script(script):
    other = _imported(ast.parse(script.read_text(), str(script))) & (NAMES - {script.stem})
    assert not other, f"{script.name} imports the script(s) {sorted(other)}; move the shared code into a package"
