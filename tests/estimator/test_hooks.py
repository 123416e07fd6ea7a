"""Hooks: protocol order, StopAtStepHook, NaN loss handling, logging, early stopping, profiler."""

from __future__ import annotations

import glob
import json
import logging
import os
import re

import numpy as np
import pytest
from _toy import ArrayIterator, LossRecorder, input_fn, model_fn, regression_data

from estimator import (
    Estimator,
    Hook,
    LoggingHook,
    NanLossDuringTrainingError,
    NanLossHook,
    ProfilerHook,
    RunConfig,
    StopAtStepHook,
    stop_if_no_decrease_hook,
    stop_if_no_increase_hook,
)

LOG_LINE = re.compile(r"^loss = (\S+), step = (\d+) \((\d+\.\d{3}) sec\)$")


def _endless():
    return input_fn(n=40, batch_size=4, epochs=None)


def _steps_on_disk(model_dir: str) -> list[int]:
    folder = os.path.join(model_dir, "checkpoints")
    return sorted(int(n) for n in os.listdir(folder) if n.isdigit()) if os.path.isdir(folder) else []


class _Calls(Hook):
    def __init__(self):
        self.calls = []

    def begin(self, run_context, step):
        self.calls.append(("begin", step))

    def before_run(self, run_context, step):
        self.calls.append(("before_run", step))

    def after_run(self, run_context, values):
        self.calls.append(("after_run", values.step, values.steps))

    def end(self, run_context, step):
        self.calls.append(("end", step))


def test_hook_protocol_order_and_steps(tmp_path):
    hook = _Calls()
    Estimator(model_fn, str(tmp_path)).train(_endless(), hooks=[hook], steps=2)
    assert hook.calls == [("begin", 0), ("before_run", 0), ("after_run", 1, 1), ("before_run", 1),
                          ("after_run", 2, 1), ("end", 2)]
    hook = _Calls()  # steps_per_loop: one call runs 4 steps; a remainder runs one by one
    est = Estimator(model_fn, str(tmp_path), config=RunConfig(steps_per_loop=4))
    est.train(_endless(), hooks=[hook], steps=10)
    assert hook.calls == [("begin", 2), ("before_run", 2), ("after_run", 6, 4), ("before_run", 6),
                          ("after_run", 10, 4), ("before_run", 10), ("after_run", 11, 1),
                          ("before_run", 11), ("after_run", 12, 1), ("end", 12)]
    assert est.get_variable_value("global_step") == 12


def test_stop_at_step_hook(tmp_path):
    est = Estimator(model_fn, str(tmp_path))
    est.train(_endless(), hooks=[StopAtStepHook(num_steps=3)])
    assert est.get_variable_value("global_step") == 3
    est.train(_endless(), hooks=[StopAtStepHook(num_steps=2)])  # relative to where training starts
    assert est.get_variable_value("global_step") == 5
    est.train(_endless(), hooks=[StopAtStepHook(last_step=7)])
    assert est.get_variable_value("global_step") == 7
    with pytest.raises(ValueError, match="exactly one"):
        StopAtStepHook(num_steps=1, last_step=2)


def _poisoned_input(nan_batch: int):
    """Endless batches of 4 whose batch number ``nan_batch`` (1-based) has a NaN label."""
    x, y = regression_data(40)
    y = y.copy()
    y[(nan_batch - 1) * 4] = np.nan
    return lambda: ArrayIterator(x, y, 4, epochs=None)


def test_nan_loss_stops_training_naming_the_step_and_saves_nothing_poisoned(tmp_path):
    config = RunConfig(save_checkpoints_steps=5, keep_checkpoint_max=None)
    est = Estimator(model_fn, str(tmp_path), config=config)
    with pytest.raises(NanLossDuringTrainingError, match=r"step 7\b"):
        est.train(_poisoned_input(7), max_steps=20)
    assert _steps_on_disk(est.model_dir) == [5]
    assert est.latest_checkpoint().endswith(os.path.join("checkpoints", "5"))

    # NanLossHook reads the loss every call and stops at the very step
    est = Estimator(model_fn, str(tmp_path / "hook"), config=config)
    with pytest.raises(NanLossDuringTrainingError, match=r"step 7\b"):
        est.train(_poisoned_input(7), hooks=[NanLossHook()], max_steps=20)
    assert _steps_on_disk(est.model_dir) == [5]


@pytest.mark.parametrize("config", [
    RunConfig(save_checkpoints_steps=5, keep_checkpoint_max=None),
    RunConfig(save_checkpoints_steps=2, save_summary_steps=1, steps_per_loop=2, keep_checkpoint_max=None),
], ids=["default", "summary_every_step_and_steps_per_loop"])
def test_nan_loss_hook_without_fail_stops_without_raising_and_keeps_the_good_checkpoints(tmp_path, caplog, config):
    calls = _Calls()
    est = Estimator(model_fn, str(tmp_path), config=config)
    with caplog.at_level(logging.ERROR, logger="estimator"):
        est.train(_poisoned_input(7), hooks=[NanLossHook(fail_on_nan_loss=False), calls], max_steps=20)
    good = [s for s in range(1, 7) if s % config.save_checkpoints_steps == 0]
    assert _steps_on_disk(est.model_dir) == good  # the diverged state at step 7 (or 8) was not saved
    assert calls.calls[-1][0] == "end"
    assert "Model diverged with loss = nan" in caplog.text
    assert "Not saving a checkpoint" in caplog.text and "at step 7" in caplog.text
    assert all(np.isfinite(est.get_variable_value(name)).all() for name in est.get_variable_names())


def test_nan_with_steps_per_loop_names_the_first_bad_step(tmp_path):
    config = RunConfig(steps_per_loop=4, save_checkpoints_steps=4, keep_checkpoint_max=None)
    est = Estimator(model_fn, str(tmp_path), config=config)
    with pytest.raises(NanLossDuringTrainingError, match=r"step 6\b"):
        est.train(_poisoned_input(6), max_steps=12)
    assert _steps_on_disk(est.model_dir) == [4]


def test_log_line_every_log_step_count_steps(tmp_path, caplog):
    recorder = LossRecorder()
    est = Estimator(model_fn, str(tmp_path), config=RunConfig(log_step_count_steps=5))
    with caplog.at_level(logging.INFO, logger="estimator"):
        est.train(_endless(), hooks=[recorder, LoggingHook(every_n_steps=3)], max_steps=10)
    lines = [m.groups() for m in map(LOG_LINE.match, caplog.messages) if m]
    losses = dict(recorder.losses)
    logged = [int(step) for _, step, _ in lines]
    assert sorted(logged) == [3, 5, 6, 9, 10]  # RunConfig: 5, 10; LoggingHook: 3, 6, 9
    for loss, step, seconds in lines:
        np.testing.assert_allclose(float(loss), losses[int(step)], rtol=1e-5)
        assert float(seconds) >= 0


def _write_history(eval_dir: str, history: list[tuple[int, float, float]]) -> None:
    os.makedirs(eval_dir, exist_ok=True)
    with open(os.path.join(eval_dir, "results.jsonl"), "w", encoding="utf-8") as f:
        for step, loss, accuracy in history:
            f.write(json.dumps({"global_step": step, "loss": loss, "accuracy": accuracy}) + "\n")


def test_early_stopping_on_a_fake_eval_history(tmp_path):
    est = Estimator(model_fn, str(tmp_path))
    # best loss at step 20, last eval at 40; best accuracy at 40
    _write_history(est.eval_dir(), [(10, 1.0, 0.5), (20, 0.5, 0.6), (30, 0.6, 0.7), (40, 0.7, 0.8)])
    assert stop_if_no_decrease_hook(est, "loss", 15).should_stop()
    assert not stop_if_no_decrease_hook(est, "loss", 20).should_stop()
    assert not stop_if_no_decrease_hook(est, "loss", 15, min_steps=50).should_stop()
    assert not stop_if_no_increase_hook(est, "accuracy", 5).should_stop()
    assert not stop_if_no_decrease_hook(est, "auc", 1).should_stop()  # a metric never evaluated

    est.train(_endless(), hooks=[stop_if_no_decrease_hook(est, "loss", 15)], steps=50)
    assert est.get_variable_value("global_step") == 1
    est.train(_endless(), hooks=[stop_if_no_decrease_hook(est, "loss", 25)], steps=3)
    assert est.get_variable_value("global_step") == 4

    other = str(tmp_path / "other_eval")
    _write_history(other, [(10, 1.0, 0.9), (20, 0.5, 0.8), (30, 0.4, 0.7)])
    est.train(_endless(), hooks=[stop_if_no_increase_hook(est, "accuracy", 10, eval_dir=other)], steps=50)
    assert est.get_variable_value("global_step") == 5


def test_evaluate_writes_the_history_early_stopping_reads(tmp_path):
    est = Estimator(model_fn, str(tmp_path)).train(_endless(), steps=2)
    result = est.evaluate(input_fn())
    hook = stop_if_no_decrease_hook(est, "rmse", 0)
    assert not hook.should_stop()  # one evaluation: the best is the latest
    with open(os.path.join(est.eval_dir(), "results.jsonl"), encoding="utf-8") as f:
        assert json.loads(f.readline()) == pytest.approx(result)


def test_profiler_hook_writes_a_trace_tensorboard_reads(tmp_path):
    est = Estimator(model_fn, str(tmp_path))
    est.train(_endless(), hooks=[ProfilerHook(start_step=2, num_steps=2)], max_steps=6)
    traces = glob.glob(os.path.join(est.model_dir, "plugins", "profile", "*", "*.xplane.pb"))
    assert len(traces) == 1 and os.path.getsize(traces[0]) > 0
