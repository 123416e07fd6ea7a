"""The README's "Extending an Estimator" example runs as written and serves what predict gives."""

from __future__ import annotations

import os
import re

import numpy as np

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def _section_code(title: str) -> str:
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, f"README section {title!r} should hold one python block, found {len(blocks)}"
    return blocks[0]


def test_readme_extension_example_trains_exports_and_serves(tmp_path, monkeypatch):
    code = _section_code("Extending an Estimator")
    assert "estimator._" not in code and not re.search(r"\.\s*_[a-z]", code), "the example must use public names"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(code, "README.md", "exec"), namespace)

    est, served = namespace["est"], namespace["served"]
    features = {"km": np.array([5.0, 5.0], np.float32), "borough": np.array(["Manhattan", "Queens"])}
    predicted = np.array([p["fare"] for p in est.predict(lambda: [features])])
    np.testing.assert_allclose(served["fare"], predicted, rtol=1e-5, atol=1e-5)
    # The closed form the data was drawn from: 2.5 + 1.8 km, + 3 in Manhattan.
    np.testing.assert_allclose(served["fare"], [14.5, 11.5], atol=0.5)
    assert os.path.isdir(tmp_path / "runs" / "fare" / "export")
