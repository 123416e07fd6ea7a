"""Taxi-fare training job run by tests/estimator/test_multiprocess.py under scripts/launch_local.py.

    python _taxi_job.py MODEL_DIR DATA_GLOB STEPS [KILL_AT_STEP]

The model is configs/taxi_fare.yaml made tiny. The input is ``PIPELINES``
pipelines over the CSV files, pipeline ``i`` reading file shard ``i`` (seeded
file and row shuffling): a process of a 2-process job reads its own pipeline;
a single process reads both and joins their batches row-wise, so it trains on
the same global batches. With KILL_AT_STEP, process 1 SIGKILLs itself once it
reaches that step (a crash; the launcher then stops process 0).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import jax
import numpy as np

from estimator import Hook, InputContext
from input_pipelines import Dataset, csv_reader
from models.task import build_estimator, load_task_config
from models.taxi_fare import COURSE_COLUMNS, COURSE_DEFAULTS, LABEL

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PIPELINES = 2
CHECKPOINT_EVERY = 2


def task_config(model_dir: str, data_glob: str, steps: int) -> Any:
    """configs/taxi_fare.yaml with a tiny model, 8 rows per pipeline and batch, checkpoints every 2 steps."""
    overrides = [f"data.train_files={data_glob}", f"data.eval_files={data_glob}", "data.batch_size=8",
                 "data.shuffle_buffer_size=32", "model.nbuckets=4", "model.hidden_units=[8,4]",
                 "model.embedding_dim=2", f"run.model_dir={model_dir}",
                 f"run.save_checkpoints_steps={CHECKPOINT_EVERY}", "run.save_summary_steps=2",
                 "run.log_step_count_steps=2", "run.steps_per_loop=1", "run.random_seed=3",
                 f"train.max_steps={steps}"]
    return load_task_config(os.path.join(ROOT, "configs", "taxi_fare.yaml"), overrides)


def pipeline(data: Any, pipeline_id: int, seed: int) -> Dataset:
    """Pipeline ``pipeline_id`` of ``PIPELINES``: its share of the files, shuffled, endless batches."""
    reader = csv_reader(COURSE_COLUMNS, COURSE_DEFAULTS, [c for c in COURSE_COLUMNS if c != "key"], LABEL)
    return (Dataset.list_files(data.train_files, shuffle=True, seed=seed)
            .shard(PIPELINES, pipeline_id)
            .interleave(reader, cycle_length=2)
            .shuffle(data.shuffle_buffer_size, seed)
            .repeat()
            .batch(data.batch_size, drop_remainder=True))


class JoinedBatches:
    """The batches of several pipelines joined row-wise; checkpointable like each of them."""

    def __init__(self, datasets: list[Dataset]):
        self._iterators = [iter(d) for d in datasets]

    def __iter__(self) -> JoinedBatches:
        return self

    def __next__(self) -> Any:
        parts = [next(it) for it in self._iterators]
        return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)

    def state(self) -> dict[str, Any]:
        """The positions of all pipelines."""
        return {"pipelines": [it.state() for it in self._iterators]}

    def restore(self, state: dict[str, Any]) -> None:
        """Continues every pipeline from a ``state()``."""
        for it, saved in zip(self._iterators, state["pipelines"], strict=True):
            it.restore(saved)


def make_input_fn(config: Any):
    """An input_fn reading the pipelines this process owns."""

    def input_fn(input_context: InputContext):
        owned = range(input_context.input_pipeline_id, PIPELINES, input_context.num_input_pipelines)
        datasets = [pipeline(config.data, i, config.run.random_seed) for i in owned]
        return datasets[0] if len(datasets) == 1 else JoinedBatches(datasets)

    return input_fn


class KillAtStep(Hook):
    """SIGKILLs process ``process`` once training reaches ``step``: a crash without clean-up."""

    def __init__(self, step: int, process: int = 1):
        self._step, self._process = step, process

    def after_run(self, run_context: Any, values: Any) -> None:
        """Kills this process at the step."""
        if values.step >= self._step and jax.process_index() == self._process:
            print(f"killing process {self._process} at step {values.step}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)


def main(model_dir: str, data_glob: str, steps: int, kill_at: int | None) -> None:
    """Trains (or resumes) the tiny taxi model to ``steps`` steps in ``model_dir``."""
    config = task_config(model_dir, data_glob, steps)
    est = build_estimator(config)
    print(f"process {jax.process_index()} of {jax.process_count()}, devices {jax.device_count()}", flush=True)
    hooks = [] if kill_at is None else [KillAtStep(kill_at)]
    est.train(make_input_fn(config), hooks=hooks, max_steps=config.train.max_steps)
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else None)
