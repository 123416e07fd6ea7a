"""RunConfig: tf.estimator's defaults, validation and replace()."""

from __future__ import annotations

import dataclasses

import pytest

from estimator import RunConfig, RunConfigError


def test_defaults_follow_tf_estimator():
    config = RunConfig()
    assert config.model_dir is None
    assert config.keep_checkpoint_max == 5
    assert config.save_summary_steps == 100
    assert config.log_step_count_steps == 100
    assert config.steps_per_loop == 1
    assert config.debug is False
    assert config.save_checkpoints_steps is None and config.save_checkpoints_secs is None
    assert config.checkpoint_every_secs == 600.0


def test_checkpoint_cadence_by_steps_or_secs():
    assert RunConfig(save_checkpoints_steps=10).checkpoint_every_secs is None
    assert RunConfig(save_checkpoints_secs=30).checkpoint_every_secs == 30


def test_steps_and_secs_together_is_an_error():
    with pytest.raises(RunConfigError, match="not both"):
        RunConfig(save_checkpoints_steps=10, save_checkpoints_secs=60)


@pytest.mark.parametrize(
    "field, value",
    [("steps_per_loop", 0), ("save_summary_steps", -1), ("log_step_count_steps", 1.5),
     ("save_checkpoints_steps", 0), ("keep_checkpoint_max", 0), ("param_sharding", "model")],
)
def test_bad_values_name_the_field(field, value):
    with pytest.raises(RunConfigError, match=field):
        RunConfig(**{field: value})


def test_replace_returns_a_validated_copy():
    config = RunConfig(model_dir="/tmp/a", random_seed=3)
    other = config.replace(steps_per_loop=4, model_dir="/tmp/b")
    assert (other.steps_per_loop, other.model_dir, other.random_seed) == (4, "/tmp/b", 3)
    assert (config.steps_per_loop, config.model_dir) == (1, "/tmp/a")
    with pytest.raises(RunConfigError, match="positive"):
        config.replace(steps_per_loop=0)
    with pytest.raises(RunConfigError, match="unknown field"):
        config.replace(learning_rate=0.1)


def test_frozen_and_serializable():
    config = RunConfig(debug=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.debug = False
    assert config.to_dict()["debug"] is True
    assert set(config.to_dict()) >= {"model_dir", "random_seed", "keep_checkpoint_max", "steps_per_loop"}
