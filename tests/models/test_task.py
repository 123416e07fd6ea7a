"""models/task.py: the run section reaches the RunConfig."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from estimator.config import ConfigError
from models import task


def _config(tmp_path: Path) -> str:
    (tmp_path / "rows.csv").write_text("1.0,-73.9,40.7,-73.9,40.7,1,k\n")
    rows = str(tmp_path / "rows.csv")
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "taxi_fare"}, "data": {"train_files": rows, "eval_files": rows}}))
    return str(path)


def test_run_section_sets_sharding_and_prefetch(tmp_path):
    config = task.load_task_config(_config(tmp_path), ["run.param_sharding=fsdp", "run.prefetch_batches=4"])
    run_config = config.run.run_config()
    assert (run_config.param_sharding, run_config.prefetch_batches) == ("fsdp", 4)
    assert task.load_task_config(_config(tmp_path)).run.run_config().param_sharding == "replicated"


def test_unknown_param_sharding_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"run\.param_sharding"):
        task.load_task_config(_config(tmp_path), ["run.param_sharding=zero3"])
