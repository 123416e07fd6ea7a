"""models/task.py: the run section reaches the RunConfig."""

from __future__ import annotations

import dataclasses
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


@pytest.mark.parametrize("override, key", [
    ("data.batch_size=0", "data.batch_size"),
    ("data.eval_batch_size=-1", "data.eval_batch_size"),
    ("run.steps_per_loop=0", "run.steps_per_loop"),
    ("run.keep_checkpoint_max=0", "run.keep_checkpoint_max"),
    ("run.save_checkpoints_steps=0", "run.save_checkpoints_steps"),
    ("model.learning_rate=-0.1", "model.learning_rate"),
    ("model.learning_rate=0", "model.learning_rate"),
    ("train.max_steps=0", "train.max_steps"),
    ("eval.steps=0", "eval.steps"),
    ("export.exporters=[best,bogus]", "export.exporters"),
    ("run.model_dir=FILE", "run.model_dir"),
])
def test_bad_values_are_config_errors_naming_the_key(tmp_path, override, key):
    (tmp_path / "a_file").write_text("not a directory")
    with pytest.raises(ConfigError, match=rf"config key '{key}'"):
        task.load_task_config(_config(tmp_path), [override.replace("FILE", str(tmp_path / "a_file"))])


def test_good_edge_values_pass(tmp_path):
    config = task.load_task_config(_config(tmp_path), ["data.batch_size=1", "run.prefetch_batches=0",
                                                       "run.save_checkpoints_steps=null", "eval.steps=null"])
    assert config.data.batch_size == 1 and config.run.run_config().prefetch_batches == 0


def test_run_section_has_runconfigs_fields_and_defaults(tmp_path):
    from estimator import RunConfig

    run = task.load_task_config(_config(tmp_path), [f"run.model_dir={tmp_path / 'm'}"]).run
    section = {f.name: f.default for f in dataclasses.fields(task.RunSection)}
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    assert set(section) == set(defaults) - set(task._RUN_FIELDS_SET_ELSEWHERE)
    assert {k: v for k, v in section.items() if k != "model_dir"} == {
        k: defaults[k] for k in section if k != "model_dir"}
    assert run.run_config().save_checkpoints_secs is None
    secs = task.load_task_config(_config(tmp_path), ["run.save_checkpoints_secs=30"])
    assert secs.run.run_config().save_checkpoints_secs == 30
    with pytest.raises(ConfigError, match="config section 'run'.*not both"):
        task.load_task_config(_config(tmp_path), ["run.save_checkpoints_secs=30", "run.save_checkpoints_steps=10"])
    with pytest.raises(ConfigError, match="unknown config key 'run.compute_dtype'"):
        task.load_task_config(_config(tmp_path), ["run.compute_dtype=bfloat16"])


def test_data_patterns_in_a_bucket_are_checked_there(tmp_path, gcs_bucket):
    from input_pipelines import fs

    fs.write_atomically(f"{gcs_bucket}/taxi/train-0.csv", "1.0,-73.9,40.7,-73.9,40.7,1,k\n")
    path = tmp_path / "task.yaml"
    data = {"train_files": f"{gcs_bucket}/taxi/train-*.csv", "eval_files": f"{gcs_bucket}/taxi/**/*.csv"}
    path.write_text(yaml.safe_dump({"model": {"name": "taxi_fare"}, "data": data}))
    assert task.load_task_config(str(path)).data.train_files == data["train_files"]  # not made absolute
    with pytest.raises(ConfigError, match=rf"'data.eval_files' = '{gcs_bucket}/none/\*.csv' matches no file;"):
        task.load_task_config(str(path), [f"data.eval_files={gcs_bucket}/none/*.csv"])
