"""train_and_evaluate over several chunks and continuous_evaluate: what is evaluated and exported, when.

Evaluation results are checked against numpy recomputed from each checkpoint's
own variables; chunked training must end bit-identical to one ``train`` call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _toy import input_fn as toy_input_fn
from _toy import model_fn as toy_model_fn
from _toy import numpy_forward, regression_data

from estimator import (
    BestExporter,
    Estimator,
    EstimatorSpec,
    Hook,
    RunConfig,
    ServingInput,
    StopAtStepHook,
    metrics,
    nn,
)
from estimator.checkpoint import CheckpointStore
from estimator.eval_history import read_eval_history, write_eval_result
from estimator.training import (
    EvalSpec,
    TrainAndEvaluateError,
    TrainSpec,
    continuous_evaluate,
    run_exporters,
    train_and_evaluate,
)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 2)).astype(np.float32)
Y = (X @ np.array([[2.0], [-1.0]], np.float32) + 1.0).astype(np.float32)


def model_fn(features, labels, mode):
    """Linear regression with an MSE loss and metric."""
    predictions = nn.Dense(1, name="linear")(features["x"])
    loss = None if labels is None else jnp.mean((predictions - labels) ** 2)
    eval_metrics = None if labels is None else {"mae": metrics.MeanAbsoluteError()(labels, predictions)}
    return EstimatorSpec(mode, predictions={"y": predictions}, loss=loss, optimizer=optax.sgd(0.1),
                         eval_metrics=eval_metrics)


def train_input_fn():
    for i in range(0, 10_000, 8):
        j = i % 32
        yield {"x": X[j:j + 8]}, Y[j:j + 8]


def eval_input_fn():
    return [({"x": X}, Y)]


class RecordingExporter:
    """Records what continuous_evaluate asked it to export."""

    name = "recording"

    def __init__(self):
        self.calls: list[tuple[str, int, bool]] = []

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        self.calls.append((os.path.basename(checkpoint_path), eval_result["global_step"], is_the_final_export))
        return f"{export_path}/{eval_result['global_step']}"


def _results(model_dir: str) -> list[dict]:
    path = os.path.join(model_dir, "eval", "results.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def _wait_for(predicate, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the evaluator"
        time.sleep(0.05)


def test_each_new_checkpoint_is_evaluated_once_then_it_stops(tmp_path):
    model_dir = str(tmp_path / "model")
    config = RunConfig(model_dir=model_dir, save_checkpoints_steps=2, keep_checkpoint_max=None, save_summary_steps=2)
    trainer = Estimator(model_fn, config=config)
    evaluator = Estimator(model_fn, config=config)
    exporter = RecordingExporter()
    spec = EvalSpec(eval_input_fn, steps=None, exporters=[exporter], start_delay_secs=0, throttle_secs=0)
    outcome: dict = {}

    def run():
        outcome["result"] = continuous_evaluate(evaluator, spec, max_steps=6, poll_secs=0.05, timeout_secs=120)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    for target in (2, 4, 6):
        trainer.train(train_input_fn, max_steps=target)
        _wait_for(lambda target=target: any(r["global_step"] == target for r in _results(model_dir)))
    thread.join(timeout=60)
    assert not thread.is_alive()

    results = _results(model_dir)
    assert [r["global_step"] for r in results] == [2, 4, 6]
    final_metrics, exports = outcome["result"]
    assert final_metrics == results[-1]
    assert exporter.calls == [("2", 2, False), ("4", 4, False), ("6", 6, True)]
    assert exports == [os.path.join(model_dir, "export", "recording", "6")]
    kernel = trainer.get_variable_value("linear/kernel")
    bias = trainer.get_variable_value("linear/bias")
    residual = X @ kernel + bias - Y
    np.testing.assert_allclose(final_metrics["loss"], np.mean(residual ** 2), rtol=1e-5)
    np.testing.assert_allclose(final_metrics["mae"], np.mean(np.abs(residual)), rtol=1e-5)
    assert os.listdir(os.path.join(model_dir, "eval"))  # event files for TensorBoard


def test_evaluates_only_the_newest_when_several_appeared(tmp_path):
    model_dir = str(tmp_path / "model")
    config = RunConfig(model_dir=model_dir, save_checkpoints_steps=2, keep_checkpoint_max=None)
    Estimator(model_fn, config=config).train(train_input_fn, max_steps=4)
    spec = EvalSpec(eval_input_fn, steps=None, start_delay_secs=0, throttle_secs=0)
    metrics_, exports = continuous_evaluate(Estimator(model_fn, config=config), spec, max_steps=4, poll_secs=0.05)
    assert metrics_["global_step"] == 4 and exports == []
    assert [r["global_step"] for r in _results(model_dir)] == [4]


def test_stops_after_timeout_without_checkpoints(tmp_path):
    est = Estimator(model_fn, model_dir=str(tmp_path / "empty"))
    spec = EvalSpec(eval_input_fn, start_delay_secs=0)
    start = time.monotonic()
    assert continuous_evaluate(est, spec, max_steps=10, poll_secs=0.05, timeout_secs=0.3) == (None, [])
    assert time.monotonic() - start < 5
    with pytest.raises(TrainAndEvaluateError, match="poll_secs"):
        continuous_evaluate(est, spec, max_steps=10, poll_secs=0)


# ---------------------------------------------------------------- interrupted evaluations and exports


class _Killed(Exception):
    """Stands in for a kill at that moment."""


class FailingOnceExporter(RecordingExporter):
    """Fails (a kill during the export) on its first call."""

    def __init__(self):
        super().__init__()
        self.failed = False

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        if not self.failed:
            self.failed = True
            raise _Killed
        return super().export(estimator, export_path, checkpoint_path, eval_result, is_the_final_export)


class KillFirstEvaluation(Hook):
    """Fails the first evaluation half-way (a kill during evaluation)."""

    killed = False

    def after_run(self, run_context, values):
        """Raises once."""
        if not KillFirstEvaluation.killed:
            KillFirstEvaluation.killed = True
            raise _Killed


def _specs(exporter, eval_hooks=()):
    return (TrainSpec(train_input_fn, max_steps=20),
            EvalSpec(eval_input_fn, steps=None, exporters=[exporter], every_n_steps=10, hooks=list(eval_hooks)))


def test_an_export_killed_half_way_is_redone_on_resume_without_evaluating_again(tmp_path):
    model_dir = str(tmp_path)
    with pytest.raises(_Killed):
        train_and_evaluate(Estimator(model_fn, model_dir), *_specs(FailingOnceExporter()))
    assert [r["global_step"] for r in _results(model_dir)] == [10]
    evaluated_10 = _results(model_dir)[0]

    exporter = RecordingExporter()
    metrics_, exports = train_and_evaluate(Estimator(model_fn, model_dir), *_specs(exporter))
    assert exporter.calls == [("10", 10, False), ("20", 20, True)]  # the missing export first, on its checkpoint
    assert [r["global_step"] for r in _results(model_dir)] == [10, 20]  # no duplicate
    assert _results(model_dir)[0] == evaluated_10
    assert metrics_["global_step"] == 20 and exports == [os.path.join(model_dir, "export", "recording", "20")]

    again = RecordingExporter()  # a finished job run again: nothing redone, nothing duplicated
    assert train_and_evaluate(Estimator(model_fn, model_dir), *_specs(again))[0] == metrics_
    assert again.calls == [] and [r["global_step"] for r in _results(model_dir)] == [10, 20]


def test_an_evaluation_killed_half_way_is_redone_on_resume(tmp_path):
    model_dir = str(tmp_path)
    KillFirstEvaluation.killed = False
    with pytest.raises(_Killed):
        train_and_evaluate(Estimator(model_fn, model_dir), *_specs(RecordingExporter(), [KillFirstEvaluation()]))
    assert _results(model_dir) == []
    exporter = RecordingExporter()
    train_and_evaluate(Estimator(model_fn, model_dir), *_specs(exporter, [KillFirstEvaluation()]))
    assert [r["global_step"] for r in _results(model_dir)] == [10, 20]
    assert exporter.calls == [("10", 10, False), ("20", 20, True)]


def test_a_restarted_continuous_evaluator_redoes_the_interrupted_export_once(tmp_path):
    model_dir = str(tmp_path)
    Estimator(model_fn, model_dir, config=RunConfig(save_checkpoints_steps=4)).train(train_input_fn, max_steps=4)
    spec = EvalSpec(eval_input_fn, steps=None, exporters=[FailingOnceExporter()], start_delay_secs=0,
                    throttle_secs=0)
    with pytest.raises(_Killed):
        continuous_evaluate(Estimator(model_fn, model_dir), spec, max_steps=4, poll_secs=0.05)
    exporter = RecordingExporter()
    spec = spec._replace(exporters=[exporter])
    continuous_evaluate(Estimator(model_fn, model_dir), spec, max_steps=4, poll_secs=0.05)
    assert exporter.calls == [("4", 4, True)]
    assert [r["global_step"] for r in _results(model_dir)] == [4]


def test_best_exporter_without_best_eval_json_takes_the_best_from_the_eval_history(tmp_path):
    model_dir = str(tmp_path)
    est = Estimator(model_fn, model_dir).train(train_input_fn, max_steps=4)
    export_path = os.path.join(model_dir, "export", "best")
    best = BestExporter("best", ServingInput({"x": ("float32", [2])}), metric_key="mae")
    write_eval_result(est.eval_dir(), {"global_step": 2, "mae": 0.5})
    write_eval_result(est.eval_dir(), {"global_step": 3, "mae": 0.1})
    checkpoint = est.latest_checkpoint()
    assert best.export(est, export_path, checkpoint, {"global_step": 4, "mae": 0.3}, False) is None  # worse than 0.1
    assert not os.path.exists(export_path)
    path = best.export(est, export_path, checkpoint, {"global_step": 4, "mae": 0.05}, False)
    assert path and os.path.isdir(path)


def test_stale_temporary_export_dirs_are_removed_before_exporting(tmp_path):
    model_dir = str(tmp_path)
    est = Estimator(model_fn, model_dir).train(train_input_fn, max_steps=2)
    base = os.path.join(model_dir, "export", "recording")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = os.path.join(base, f".tmp-export-{proc.pid}-0123abcd")
    alive = os.path.join(base, f".tmp-export-{os.getppid()}-4567cdef")
    for path in (dead, alive):
        os.makedirs(os.path.join(path, "variables"))
    run_exporters(est, [RecordingExporter()], {"global_step": 2}, is_the_final_export=False)
    assert not os.path.exists(dead) and os.path.exists(alive)


def test_results_jsonl_keeps_one_line_per_step(tmp_path):
    write_eval_result(str(tmp_path), {"global_step": 5, "loss": 2.0})
    write_eval_result(str(tmp_path), {"global_step": 3, "loss": 3.0})
    write_eval_result(str(tmp_path), {"global_step": 5, "loss": 1.0})
    assert read_eval_history(str(tmp_path)) == [{"global_step": 3, "loss": 3.0}, {"global_step": 5, "loss": 1.0}]


# ---------------------------------------------------------------- train_and_evaluate in several chunks

TOY_X, TOY_Y = regression_data(48)


def toy_eval_input_fn():
    return [({"x": TOY_X}, TOY_Y)]


def _toy_estimator(model_dir: str, steps_per_loop: int = 1) -> Estimator:
    """The toy MLP (adam: optimizer slots must carry over between chunks); only train_and_evaluate saves."""
    config = RunConfig(steps_per_loop=steps_per_loop, keep_checkpoint_max=None, save_checkpoints_steps=1000,
                       save_summary_steps=1000, log_step_count_steps=1000)
    return Estimator(toy_model_fn, model_dir, config=config, params={"learning_rate": 0.05})


def _toy_state(model_dir: str, step: int) -> dict[str, np.ndarray]:
    """Every array of a checkpoint's training state (variables, optimizer slots, step, rng) by path."""
    state = CheckpointStore(model_dir, read_only=True).restore_arrays(step)
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def _numpy_mae(model_dir: str, step: int) -> float:
    state = CheckpointStore(model_dir, read_only=True).restore_arrays(step)
    flat = nn.flatten_names(state["params"])
    return float(np.mean(np.abs(numpy_forward(flat, TOY_X) - TOY_Y)))


def _chunked(est: Estimator, exporter: RecordingExporter, max_steps: int | None, batches: int | None = None,
             **eval_args) -> tuple[dict, list[str]]:
    """train_and_evaluate on batches of 4 rows: ``batches`` of them (one epoch), or endless."""
    eval_args = {"every_n_steps": 4, "throttle_secs": 10_000, **eval_args}
    train_input = toy_input_fn(n=4 * (batches or 12), batch_size=4, epochs=1 if batches else None)
    return train_and_evaluate(est, TrainSpec(train_input, max_steps=max_steps),
                              EvalSpec(toy_eval_input_fn, steps=None, exporters=[exporter], **eval_args))


# A chunk ends at the first call crossing a multiple of every_n_steps; a call runs steps_per_loop
# steps (fewer near max_steps). 1 step a call: 4, 8, then max_steps 10. 3 steps a call:
# 0->3->6 (crossed 4), 6->9 (crossed 8), 9->10 (max_steps).
@pytest.mark.parametrize(("steps_per_loop", "evaluated"), [(1, [4, 8, 10]), (3, [6, 9, 10])])
def test_chunks_evaluate_at_every_n_steps_and_equal_one_uninterrupted_run(tmp_path, steps_per_loop, evaluated):
    exporter = RecordingExporter()
    est = _toy_estimator(str(tmp_path / "chunked"), steps_per_loop)
    final, exports = _chunked(est, exporter, max_steps=10)

    assert [r["global_step"] for r in _results(est.model_dir)] == evaluated
    assert exporter.calls == [(str(s), s, s == evaluated[-1]) for s in evaluated]  # only the last is final
    assert exports == [os.path.join(est.model_dir, "export", "recording", str(evaluated[-1]))]
    assert final["global_step"] == evaluated[-1]
    for result in _results(est.model_dir):  # each evaluation is of its own checkpoint
        assert result["mae"] == pytest.approx(_numpy_mae(est.model_dir, result["global_step"]), rel=1e-5)

    straight = _toy_estimator(str(tmp_path / "straight"), steps_per_loop)
    straight.train(toy_input_fn(n=48, batch_size=4, epochs=None), max_steps=10)
    chunked, uninterrupted = _toy_state(est.model_dir, 10), _toy_state(straight.model_dir, 10)
    assert chunked.keys() == uninterrupted.keys() and any("opt_state" in k for k in chunked)
    for name, value in chunked.items():  # bit for bit, optimizer slots included
        assert value.tobytes() == uninterrupted[name].tobytes(), name


@pytest.mark.parametrize(("batches", "evaluated", "calls"), [
    (10, [4, 8, 10], [("4", 4, False), ("8", 8, False), ("10", 10, True)]),
    # the input ends on the very call step 8's evaluation was due: its checkpoint gets the final export
    (8, [4, 8], [("4", 4, False), ("8", 8, False), ("8", 8, True)]),
], ids=["between_evaluations", "where_an_evaluation_was_due"])
def test_when_the_input_ends_the_last_evaluation_is_the_final_export(tmp_path, batches, evaluated, calls):
    exporter = RecordingExporter()
    est = _toy_estimator(str(tmp_path))
    final, exports = _chunked(est, exporter, max_steps=None, batches=batches)
    assert [r["global_step"] for r in _results(est.model_dir)] == evaluated  # each step evaluated once
    assert exporter.calls == calls
    assert final["global_step"] == evaluated[-1]
    assert exports == [os.path.join(est.model_dir, "export", "recording", str(evaluated[-1]))]


def test_a_hook_stopping_training_ends_train_and_evaluate_with_a_final_export(tmp_path):
    exporter = RecordingExporter()
    est = _toy_estimator(str(tmp_path))
    spec = TrainSpec(toy_input_fn(n=48, batch_size=4, epochs=None), max_steps=100, hooks=[StopAtStepHook(last_step=6)])
    train_and_evaluate(est, spec, EvalSpec(toy_eval_input_fn, steps=None, exporters=[exporter], every_n_steps=4))
    assert exporter.calls == [("4", 4, False), ("6", 6, True)]


def test_throttle_secs_zero_evaluates_after_every_call(tmp_path):
    exporter = RecordingExporter()
    est = _toy_estimator(str(tmp_path), steps_per_loop=2)
    _chunked(est, exporter, max_steps=6, every_n_steps=None, throttle_secs=0)
    assert [c[1:] for c in exporter.calls] == [(2, False), (4, False), (6, True)]
