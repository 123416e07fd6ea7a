"""train_and_evaluate over several chunks: evaluation steps, the final-export flag, and exact chunking.

The oracles are independent of the Estimator: each evaluation's MAE is recomputed
with numpy from the checkpoint's own variables, and chunked training must end
bit-identical to one uninterrupted ``train`` call.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from estimator import Estimator, EstimatorSpec, RunConfig, metrics, nn
from estimator.checkpoint import CheckpointStore
from estimator.training import EvalSpec, TrainSpec, train_and_evaluate

RNG = np.random.default_rng(1)
X = RNG.normal(size=(48, 2)).astype(np.float32)
Y = (X @ np.array([[2.0], [-1.0]], np.float32) + 0.5 + 0.1 * RNG.normal(size=(48, 1))).astype(np.float32)
BATCH = 4


def model_fn(features, labels, mode):
    """Linear regression (MSE loss, MAE metric) with Adam, so optimizer slots must carry over between chunks."""
    predictions = nn.Dense(1, name="linear")(features["x"])
    loss = None if labels is None else jnp.mean((predictions - labels) ** 2)
    eval_metrics = None if labels is None else {"mae": metrics.MeanAbsoluteError()(labels, predictions)}
    return EstimatorSpec(mode, predictions={"y": predictions}, loss=loss, optimizer=optax.adam(0.05),
                         eval_metrics=eval_metrics)


class _Batches:
    """``n`` batches cycling over X, Y with a checkpointable position (like an input_pipelines iterator)."""

    def __init__(self, n: int | None):
        self.n, self.i = n, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.n is not None and self.i >= self.n:
            raise StopIteration
        j = (self.i * BATCH) % len(X)
        self.i += 1
        return {"x": X[j:j + BATCH]}, Y[j:j + BATCH]

    def state(self):
        return {"i": self.i}

    def restore(self, state):
        self.i = state["i"]


def _train_input(n: int | None = None):
    return lambda: _Batches(n)


def eval_input_fn():
    return [({"x": X}, Y)]


class RecordingExporter:
    """Records (checkpoint step, evaluated step, is_the_final_export) of each call."""

    name = "recording"

    def __init__(self):
        self.calls: list[tuple[int, int, bool]] = []

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        self.calls.append((int(os.path.basename(checkpoint_path)), eval_result["global_step"], is_the_final_export))
        return os.path.join(export_path, str(eval_result["global_step"]))


def _config(steps_per_loop: int) -> RunConfig:
    return RunConfig(steps_per_loop=steps_per_loop, keep_checkpoint_max=None, save_checkpoints_steps=1000,
                     save_summary_steps=1000, log_step_count_steps=1000)


def _results(model_dir: str) -> list[dict]:
    with open(os.path.join(model_dir, "eval", "results.jsonl")) as f:
        return [json.loads(line) for line in f]


def _numpy_mae(model_dir: str, step: int) -> float:
    state = CheckpointStore(model_dir, read_only=True).restore_arrays(step)
    linear = state["params"]["linear"]
    predictions = X @ np.asarray(linear["kernel"], np.float64) + np.asarray(linear["bias"], np.float64)
    return float(np.mean(np.abs(predictions - Y)))


def _state_leaves(model_dir: str, step: int) -> dict[str, np.ndarray]:
    """Every array of the checkpointed training state (params, optimizer slots, step, rng) by its path."""
    state = CheckpointStore(model_dir, read_only=True).restore_arrays(step)
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


# Chunks end at the first call crossing a multiple of every_n_steps; a call runs steps_per_loop
# steps (fewer when max_steps is near). 1 step a call: 4, 8, then max_steps 10. 3 a call:
# 0->3->6 (crossed 4), 6->9 (crossed 8), 9->10 (max_steps).
@pytest.mark.parametrize(("steps_per_loop", "evaluated"), [(1, [4, 8, 10]), (3, [6, 9, 10])])
def test_chunks_evaluate_at_every_n_steps_and_only_the_last_export_is_final(tmp_path, steps_per_loop, evaluated):
    model_dir = str(tmp_path / "chunked")
    exporter = RecordingExporter()
    est = Estimator(model_fn, model_dir, config=_config(steps_per_loop))
    final, exports = train_and_evaluate(
        est, TrainSpec(_train_input(), max_steps=10),
        EvalSpec(eval_input_fn, steps=None, exporters=[exporter], every_n_steps=4, throttle_secs=10_000))

    assert [r["global_step"] for r in _results(model_dir)] == evaluated
    assert exporter.calls == [(s, s, s == evaluated[-1]) for s in evaluated]
    assert exports == [os.path.join(model_dir, "export", "recording", str(evaluated[-1]))]
    assert final["global_step"] == evaluated[-1]
    for result in _results(model_dir):  # each evaluation is of its own checkpoint
        assert result["mae"] == pytest.approx(_numpy_mae(model_dir, result["global_step"]), rel=1e-5)

    straight = Estimator(model_fn, str(tmp_path / "straight"), config=_config(steps_per_loop))
    straight.train(_train_input(), max_steps=10)
    chunked, uninterrupted = _state_leaves(model_dir, 10), _state_leaves(straight.model_dir, 10)
    assert chunked.keys() == uninterrupted.keys() and any("opt_state" in k for k in chunked)
    for name, value in chunked.items():  # bit for bit, optimizer slots included
        assert value.tobytes() == uninterrupted[name].tobytes(), name


def test_when_the_input_ends_the_last_evaluation_is_the_final_export(tmp_path):
    exporter = RecordingExporter()
    est = Estimator(model_fn, str(tmp_path), config=_config(1))
    final, exports = train_and_evaluate(
        est, TrainSpec(_train_input(10), max_steps=None),
        EvalSpec(eval_input_fn, steps=None, exporters=[exporter], every_n_steps=4, throttle_secs=10_000))
    assert [r["global_step"] for r in _results(est.model_dir)] == [4, 8, 10]
    assert exporter.calls == [(4, 4, False), (8, 8, False), (10, 10, True)]
    assert final["global_step"] == 10 and exports == [os.path.join(est.model_dir, "export", "recording", "10")]


def test_throttle_secs_zero_evaluates_after_every_call(tmp_path):
    exporter = RecordingExporter()
    est = Estimator(model_fn, str(tmp_path), config=_config(2))
    train_and_evaluate(est, TrainSpec(_train_input(), max_steps=6),
                       EvalSpec(eval_input_fn, steps=None, exporters=[exporter], throttle_secs=0))
    assert [r["global_step"] for r in _results(est.model_dir)] == [2, 4, 6]
    assert [c[2] for c in exporter.calls] == [False, False, True]


def test_input_ending_where_an_evaluation_was_due_still_gets_a_final_export(tmp_path):
    exporter = RecordingExporter()
    est = Estimator(model_fn, str(tmp_path), config=_config(1))
    final, exports = train_and_evaluate(
        est, TrainSpec(_train_input(8), max_steps=None),
        EvalSpec(eval_input_fn, steps=None, exporters=[exporter], every_n_steps=4, throttle_secs=10_000))
    assert [r["global_step"] for r in _results(est.model_dir)] == [4, 8]  # step 8 evaluated once
    assert exporter.calls == [(4, 4, False), (8, 8, False), (8, 8, True)]
    assert final["global_step"] == 8 and exports == [os.path.join(est.model_dir, "export", "recording", "8")]
