"""Running the task scripts in subprocesses on tiny taxi CSVs (shared by tests/scripts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]
CONFIG = str(REPO / "configs" / "taxi_fare.yaml")


def script(name: str) -> str:
    """The path of ``scripts/<name>.py``."""
    return str(REPO / "scripts" / f"{name}.py")


def env() -> dict[str, str]:
    """The environment of a script run: this checkout first, CPU only."""
    return dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")


def run(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs ``python *args`` to the end, capturing text output."""
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=timeout)


def make_tiny_data(out: Path) -> Path:
    """400 train and 100 validation rows from scripts/make_taxi_data.py under ``out``."""
    for split, rows, seed in (("train", 400, 1), ("valid", 100, 2)):
        result = run(script("make_taxi_data"), "--rows", str(rows), "--out", str(out / split), "--seed", str(seed),
                     cwd=out)
        assert result.returncode == 0, result.stderr
    return out


def overrides(data: Path, model_dir: Path, *more: str) -> list[str]:
    """``--set`` of a tiny, fast taxi model on ``data`` in ``model_dir``, then ``more`` overrides."""
    return ["--set", f"data.train_files={data}/train/*.csv", f"data.eval_files={data}/valid/*.csv",
            f"run.model_dir={model_dir}", "train.max_steps=20", "eval.every_n_steps=20", "data.batch_size=32",
            "model.hidden_units=[8]", "model.nbuckets=4", "model.embedding_dim=2", "run.save_checkpoints_steps=10",
            "run.steps_per_loop=5", *more]
