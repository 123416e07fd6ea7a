"""TensorBoard events, read back with TensorBoard's own reader: train scalars, eval scalars, config text."""

from __future__ import annotations

import json
import os

import numpy as np
import optax
import pytest
from _toy import LossRecorder, input_fn, model_fn
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from estimator import Estimator, RunConfig

LEARNING_RATE = 0.02


def _events(logdir: str) -> EventAccumulator:
    events = EventAccumulator(logdir)
    events.Reload()
    return events


def _scalars(events: EventAccumulator, tag: str) -> dict[int, float]:
    return {e.step: e.value for e in events.Scalars(tag)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """20 steps with summaries every 5, checkpoints every 10; the per-step losses."""
    config = RunConfig(save_summary_steps=5, save_checkpoints_steps=10, keep_checkpoint_max=None)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=LEARNING_RATE)
    est = Estimator(model_fn, str(tmp_path_factory.mktemp("summary")), config=config,
                    params={"optimizer": optimizer, "units": 8})
    recorder = LossRecorder()
    est.train(input_fn(n=40, batch_size=4, epochs=None), hooks=[recorder], max_steps=20)
    return est, recorder.losses


def test_train_scalars_with_tf_estimator_tags(run):
    est, losses = run
    events = _events(est.model_dir)
    assert {"loss", "global_step/sec", "examples/sec", "learning_rate"} <= set(events.Tags()["scalars"])
    steps = [5, 10, 15, 20]
    # loss: the mean of the steps' losses since the previous summary
    per_step = np.array([loss for _, loss in losses])
    summary_loss = _scalars(events, "loss")
    assert sorted(summary_loss) == steps
    for step in steps:
        np.testing.assert_allclose(summary_loss[step], per_step[step - 5:step].mean(), rtol=1e-5)
    for tag in ("global_step/sec", "examples/sec"):
        values = _scalars(events, tag)
        assert sorted(values) == steps and all(v > 0 for v in values.values()), tag
    rate = _scalars(events, "global_step/sec")
    examples = _scalars(events, "examples/sec")
    # 4 examples per step, measured over the same interval (tensorboard stores float32)
    for step in steps:
        np.testing.assert_allclose(examples[step], 4 * rate[step], rtol=1e-4)
    np.testing.assert_allclose(list(_scalars(events, "learning_rate").values()), LEARNING_RATE, rtol=1e-6)


def test_run_config_and_params_recorded_as_text(run):
    est, _ = run
    events = _events(est.model_dir)
    tags = events.Tags()["tensors"]
    assert "run_config/text_summary" in tags
    text = tensor_util.make_ndarray(events.Tensors("run_config/text_summary")[0].tensor_proto)
    body = text.item().decode() if text.shape == () else text[0].decode()
    assert '"save_summary_steps": 5' in body and '"units": 8' in body
    with open(os.path.join(est.model_dir, "run_config.json"), encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["run_config"]["save_checkpoints_steps"] == 10 and saved["params"]["units"] == 8


def test_eval_scalars_at_the_checkpoint_step(run):
    est, _ = run
    latest = est.evaluate(input_fn())
    older = est.evaluate(input_fn(), checkpoint_path=os.path.join(est.model_dir, "checkpoints", "10"),
                         name="holdout")
    assert est.eval_dir() == os.path.join(est.model_dir, "eval")
    assert est.eval_dir("holdout") == os.path.join(est.model_dir, "eval_holdout")
    for logdir, result, step in ((est.eval_dir(), latest, 20), (est.eval_dir("holdout"), older, 10)):
        events = _events(logdir)
        assert set(events.Tags()["scalars"]) == {"loss", "rmse", "mae"}
        for tag in ("loss", "rmse", "mae"):
            assert _scalars(events, tag) == {step: pytest.approx(result[tag], rel=1e-6)}, (logdir, tag)
    assert "rmse" not in _events(est.model_dir).Tags()["scalars"]  # eval scalars stay out of train's


def test_no_learning_rate_tag_when_the_optimizer_hides_it(tmp_path):
    config = RunConfig(save_summary_steps=2)
    est = Estimator(model_fn, str(tmp_path), config=config, params={"optimizer": optax.sgd(0.1)})
    est.train(input_fn(n=16, batch_size=4), max_steps=4)
    tags = set(_events(est.model_dir).Tags()["scalars"])
    assert "loss" in tags and "learning_rate" not in tags
