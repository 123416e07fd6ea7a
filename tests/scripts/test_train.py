"""scripts/train.py end to end in a subprocess, on tiny CSVs from scripts/make_taxi_data.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("taxi")
    for split, rows, seed in (("train", 400, 1), ("valid", 100, 2)):
        result = _run(str(REPO / "scripts" / "make_taxi_data.py"), "--rows", str(rows), "--out",
                      str(out / split), "--seed", str(seed), cwd=out)
        assert result.returncode == 0, result.stderr
    return out


def _overrides(data: Path, model_dir: Path) -> list[str]:
    return ["--set", f"data.train_files={data}/train/*.csv", f"data.eval_files={data}/valid/*.csv",
            f"run.model_dir={model_dir}", "train.max_steps=20", "eval.every_n_steps=20", "data.batch_size=32",
            "model.hidden_units=[8]", "model.nbuckets=4", "model.embedding_dim=2", "run.save_checkpoints_steps=10",
            "run.steps_per_loop=5"]


def test_train_script_trains_evaluates_and_writes_model_dir(tiny_data, tmp_path):
    model_dir = tmp_path / "run"
    result = _run(str(REPO / "scripts" / "train.py"), "--config", str(REPO / "configs" / "taxi_fare.yaml"),
                  *_overrides(tiny_data, model_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    start = result.stdout.index("{")
    report, _ = json.JSONDecoder().raw_decode(result.stdout[start:])
    metrics = report["metrics"]
    assert metrics["global_step"] == 20
    assert {"rmse", "average_loss", "label/mean", "prediction/mean"} <= set(metrics)
    assert (model_dir / "config.yaml").is_file()
    assert "max_steps: 20" in (model_dir / "config.yaml").read_text()
    assert any((model_dir / "checkpoints").iterdir())
    assert list(model_dir.rglob("events.out.tfevents*"))
    assert report["exports"] and all(Path(p).is_dir() for p in report["exports"])
    assert "tensorboard --logdir" in result.stdout


def test_train_script_bad_config_exits_2_with_message(tiny_data, tmp_path):
    result = _run(str(REPO / "scripts" / "train.py"), "--config", str(REPO / "configs" / "taxi_fare.yaml"),
                  *_overrides(tiny_data, tmp_path / "run"), "model.hiden_units=[8]", cwd=tmp_path)
    assert result.returncode == 2
    assert "model.hiden_units" in result.stderr and "model.hidden_units" in result.stderr


def test_train_script_missing_data_exits_2_naming_path(tmp_path):
    result = _run(str(REPO / "scripts" / "train.py"), "--config", str(REPO / "configs" / "taxi_fare.yaml"),
                  "--set", f"data.train_files={tmp_path}/none-*.csv", cwd=tmp_path)
    assert result.returncode == 2
    assert f"{tmp_path}/none-*.csv" in result.stderr
