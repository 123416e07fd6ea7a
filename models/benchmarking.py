"""Code shared by the benchmark scripts in scripts/ (a timing hook, the taxi benchmark model, its input and config).

Not part of the library; it lives in a package so that scripts never import each other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from estimator import Hook
from models.taxi_data import COURSE_COLUMNS

NUMERIC = COURSE_COLUMNS[:6]  # the label and the five numeric inputs
SCAN = 50  # train steps per device call in the training benchmarks


class SpanTimer(Hook):
    """Times Estimator.train from the first call reaching ``start_step`` to the one reaching ``last_step``.

    Reads the loss at both ends, which waits for the device, so the span holds
    exactly the work of the steps in between (compilation stays in the warm-up).
    ``seconds``, ``cpu_seconds`` (of the whole process over the span) and ``loss`` (the last
    call's) are set when training ends.
    """

    def __init__(self, start_step: int, last_step: int):
        self.start_step, self.last_step = start_step, last_step
        self._t0: float | None = None
        self.seconds: float | None = None
        self.cpu_seconds: float | None = None
        self._cpu0 = 0.0
        self.loss: float | None = None

    def after_run(self, run_context, values):
        """Waits for the device at the two ends of the timed span."""
        if self._t0 is None and values.step >= self.start_step:
            float(values.loss)
            self._t0, self._cpu0 = time.perf_counter(), time.process_time()
        elif self._t0 is not None and self.seconds is None and values.step >= self.last_step:
            self.loss = float(values.loss)
            self.seconds = time.perf_counter() - self._t0
            self.cpu_seconds = time.process_time() - self._cpu0


def taxi_mlp_fn(features, labels, mode):
    """The benchmark's taxi model: an MLP over the raw columns plus the coordinate differences."""
    import jax.numpy as jnp
    import optax

    from estimator import EstimatorSpec, ModeKeys, nn

    columns = [features[c] for c in NUMERIC[1:]]
    columns += [features["pickuplat"] - features["dropofflat"], features["pickuplon"] - features["dropofflon"]]
    h = nn.Dense(64, activation="relu", name="hidden_0")(jnp.stack(columns, axis=1))
    h = nn.Dense(32, activation="relu", name="hidden_1")(h)
    fare = nn.Dense(1, name="fare")(h)[:, 0]
    if mode == ModeKeys.PREDICT:
        return EstimatorSpec(mode, predictions={"fare": fare})
    return EstimatorSpec(mode, loss=jnp.mean((fare - labels) ** 2), optimizer=optax.adam(1e-3))


def csv_input_fn(pattern: str, batch_size: int, num_epochs: int | None = None, num_parallel_reads: int | None = None):
    """An input_fn over the taxi shards: parse + shuffle 10k rows + batches of float32 arrays."""
    from input_pipelines import make_csv_dataset

    return lambda: make_csv_dataset(pattern, batch_size, column_names=COURSE_COLUMNS,
                                    column_defaults=[0.0] * 6, select_columns=NUMERIC,
                                    label_name="fare_amount", header=False, num_epochs=num_epochs, seed=0,
                                    num_parallel_reads=num_parallel_reads)


def train_config(model_dir: str):
    """The RunConfig of the training rows: 50 steps per device call, no checkpoints or summaries."""
    from estimator import RunConfig

    return RunConfig(model_dir=model_dir, steps_per_loop=SCAN, save_checkpoints_steps=10**9,
                     save_summary_steps=10**9, log_step_count_steps=10**9)


def run_child(args: Sequence[str]) -> tuple[dict[str, Any], float, float]:
    """Run `python args` and return (its last JSON output line, peak RSS in MB, CPU seconds)."""
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"child {args} failed with exit code {proc.returncode}")
    cpu = usage.ru_utime + usage.ru_stime
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024, cpu
