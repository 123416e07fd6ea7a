"""scripts/train.py end to end in a subprocess, on tiny CSVs from scripts/make_taxi_data.py."""

from __future__ import annotations

import json
from pathlib import Path

from _taxi_runs import overrides, run

REPO = Path(__file__).parents[2]


def test_train_script_trains_evaluates_and_writes_model_dir(tiny_data, tmp_path):
    model_dir = tmp_path / "run"
    result = run(str(REPO / "scripts" / "train.py"), "--config", str(REPO / "configs" / "taxi_fare.yaml"),
                  *overrides(tiny_data, model_dir), cwd=tmp_path)
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
    # the estimator's INFO lines reach stderr (absl's handler does not swallow them)
    assert f"INFO estimator: Saving checkpoints for 20 into {model_dir}" in result.stderr
    assert "INFO estimator: Saving dict for global step 20" in result.stderr


def test_train_script_bad_config_exits_2_with_message(tiny_data, tmp_path):
    result = run(str(REPO / "scripts" / "train.py"), "--config", str(REPO / "configs" / "taxi_fare.yaml"),
                  *overrides(tiny_data, tmp_path / "run"), "model.hiden_units=[8]", cwd=tmp_path)
    assert result.returncode == 2
    assert "model.hiden_units" in result.stderr and "model.hidden_units" in result.stderr


def test_train_script_missing_data_exits_2_naming_path(tmp_path):
    result = run(str(REPO / "scripts" / "train.py"), "--config", str(REPO / "configs" / "taxi_fare.yaml"),
                  "--set", f"data.train_files={tmp_path}/none-*.csv", cwd=tmp_path)
    assert result.returncode == 2
    assert f"{tmp_path}/none-*.csv" in result.stderr
