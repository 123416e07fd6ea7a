"""Taxi-fare training job run by tests/estimator/test_multiprocess.py under scripts/launch_local.py.

    python _taxi_job.py MODEL_DIR DATA_GLOB STEPS [--kill_at STEP] [--sigterm_at STEP] [--checkpoint_secs S]

The model is configs/taxi_fare.yaml made tiny. The input is ``PIPELINES``
pipelines over the CSV files, pipeline ``i`` reading file shard ``i`` (seeded
file and row shuffling): a process of a 2-process job reads its own pipeline;
a single process reads both and joins their batches row-wise, so it trains on
the same global batches. With KILL_AT_STEP, process 1 SIGKILLs itself once it
reaches that step (a crash; the launcher then stops process 0); with
``--sigterm_at`` it sends itself SIGTERM instead (a preemption notice). With
``--checkpoint_secs``, checkpoints are time-based and the processes' clocks
disagree: process 1 starts its clock a second late, process 0 makes every
step slow.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

import jax
import numpy as np

from estimator import Hook, InputContext, TrainingInterruptedError
from input_pipelines import Dataset, csv_reader
from models.task import load_task_config
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


class SignalAtStep(Hook):
    """Process ``process`` sends itself SIGTERM once training reaches ``step`` (a preemption notice)."""

    def __init__(self, step: int, process: int = 1):
        self._step, self._process, self._sent = step, process, False

    def after_run(self, run_context: Any, values: Any) -> None:
        """Signals this process once, at the step."""
        if not self._sent and values.step >= self._step and jax.process_index() == self._process:
            self._sent = True
            print(f"SIGTERM to process {self._process} at step {values.step}", flush=True)
            os.kill(os.getpid(), signal.SIGTERM)


class ClockSkew(Hook):
    """Process 1 starts ``skew`` seconds late; process 0 sleeps ``step_secs`` after every call."""

    def __init__(self, skew: float, step_secs: float):
        self._skew, self._step_secs = skew, step_secs

    def begin(self, run_context: Any, step: int) -> None:
        """Delays process 1 (its checkpoint clock starts later)."""
        if jax.process_index() == 1:
            time.sleep(self._skew)

    def after_run(self, run_context: Any, values: Any) -> None:
        """Slows process 0's steps (and so process 1's, which wait for it)."""
        if jax.process_index() == 0:
            time.sleep(self._step_secs)


def main(argv: list[str] | None = None) -> None:
    """Trains (or resumes) the tiny taxi model to STEPS steps in MODEL_DIR."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_dir")
    parser.add_argument("data_glob")
    parser.add_argument("steps", type=int)
    parser.add_argument("--kill_at", type=int, default=None, help="process 1 SIGKILLs itself at this step")
    parser.add_argument("--sigterm_at", type=int, default=None, help="process 1 gets SIGTERM at this step")
    parser.add_argument("--checkpoint_secs", type=float, default=None, help="time-based checkpoints, skewed clocks")
    args = parser.parse_args(argv)
    config = task_config(args.model_dir, args.data_glob, args.steps)
    run_config = config.run.run_config()
    hooks: list[Hook] = []
    if args.kill_at is not None:
        hooks.append(KillAtStep(args.kill_at))
    if args.sigterm_at is not None:
        hooks.append(SignalAtStep(args.sigterm_at))
    if args.checkpoint_secs is not None:
        run_config = run_config.replace(save_checkpoints_steps=None, save_checkpoints_secs=args.checkpoint_secs)
        hooks.append(ClockSkew(skew=args.checkpoint_secs, step_secs=args.checkpoint_secs / 3))
    est = config.module.build_estimator(config.model, config.data, run_config)
    print(f"process {jax.process_index()} of {jax.process_count()}, devices {jax.device_count()}", flush=True)
    try:
        est.train(make_input_fn(config), hooks=hooks, max_steps=config.train.max_steps)
    except TrainingInterruptedError as error:
        print(f"interrupted at step {error.step}", flush=True)
        sys.exit(error.exit_code)
    print("done", flush=True)


if __name__ == "__main__":
    main()
