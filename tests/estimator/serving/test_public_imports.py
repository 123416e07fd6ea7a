"""The model server reads exports through ``estimator.export``'s public names only."""

from __future__ import annotations

import ast
import os

import estimator.export
import estimator.serving

SERVING_DIR = os.path.dirname(estimator.serving.__file__)


def _imports(path: str) -> list[tuple[str, str | None, int]]:
    """``(module, name or None, line)`` of every ``estimator...`` import in the file."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "estimator":
            found += [(node.module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names if alias.name.startswith("estimator")]
    return found


def test_serving_imports_only_public_export_names_from_the_rest_of_estimator():
    bad = []
    for file in sorted(os.listdir(SERVING_DIR)):
        if not file.endswith(".py"):
            continue
        for module, name, line in _imports(os.path.join(SERVING_DIR, file)):
            if module.startswith("estimator.serving") or (module == "estimator" and name == "serving"):
                continue
            if module == "estimator.export" and name in estimator.export.__all__:
                continue
            bad.append(f"estimator/serving/{file}:{line}: from {module} import {name}")
    assert not bad, "serving may import only estimator.export's public names:\n" + "\n".join(bad)
