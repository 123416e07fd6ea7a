"""TrainSpec, EvalSpec and train_and_evaluate (tf.estimator's semantics, plus every_n_steps).

Training runs in chunks: a hook ends a chunk when an evaluation is due (every
``every_n_steps`` steps, or ``throttle_secs`` after the last evaluation); the
chunk's final checkpoint is then evaluated and the exporters run. Because the
input position is checkpointed, the chunks see exactly the batches one
uninterrupted ``train`` call would have seen.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from estimator._export_dir import remove_stale_tmp
from estimator.cadence import Cadence
from estimator.checkpoint import CheckpointStore, checkpoint_dir, has_checkpoint_dir
from estimator.eval_history import EvalJournal, pending
from estimator.hooks import Hook, RunContext, RunValues
from input_pipelines import fs

log = logging.getLogger("estimator")


class TrainSpec(NamedTuple):
    """What to train on and for how long.

    Attributes:
      input_fn: the training input.
      max_steps: absolute step to stop at (None: until the input ends).
      hooks: extra hooks for the train loop.
    """

    input_fn: Callable
    max_steps: int | None = None
    hooks: Sequence[Hook] = ()


class EvalSpec(NamedTuple):
    """How and when to evaluate while training.

    Attributes:
      input_fn: the evaluation input.
      steps: batches per evaluation (None: the whole input).
      name: evaluation name (events under ``eval_<name>``).
      hooks: hooks for the evaluation loop.
      exporters: exporters run after each evaluation.
      start_delay_secs: wait before the first evaluation (continuous evaluator only).
      throttle_secs: at least this long between evaluations (the continuous
        evaluator's final step is evaluated regardless).
      every_n_steps: also evaluate every N train steps (None: time-based only).
    """

    input_fn: Callable
    steps: int | None = 100
    name: str | None = None
    hooks: Sequence[Hook] = ()
    exporters: Sequence[Any] = ()
    start_delay_secs: float = 120
    throttle_secs: float = 600
    every_n_steps: int | None = None


class TrainAndEvaluateError(ValueError):
    """train_and_evaluate was given specs it cannot run."""


class _EvalDue(Hook):
    """Ends a training chunk when an evaluation is due: every ``every_n_steps`` steps, else ``throttle_secs``."""

    def __init__(self, every_n_steps: int | None, throttle_secs: float, last_eval_time: float):
        self._cadence = Cadence(every_n_steps, None if every_n_steps else throttle_secs, now=last_eval_time)
        self.requested = False  # whether this hook ended the chunk (else the input or another hook did)

    def begin(self, run_context: RunContext, step: int) -> None:
        """Counts steps from the chunk's first step (the time from the last evaluation)."""
        self._cadence.last_step = step

    def after_run(self, run_context: RunContext, values: RunValues) -> None:
        """Stops the chunk when the cadence is due."""
        if self._cadence.due(values.step):
            self.requested = True
            run_context.request_stop()


def run_exporters(estimator: Any, exporters: Sequence[Any], eval_result: dict[str, Any],
                  is_the_final_export: bool, checkpoint: str | None = None,
                  journal: EvalJournal | None = None, done: dict[str, str | None] | None = None) -> list[str]:
    """Runs each exporter on ``checkpoint`` (default: the latest); returns the paths written.

    Exporters in ``done`` (name -> path, from an earlier run) are skipped; with a
    ``journal``, each one that finishes is recorded (a kill mid-way redoes only the rest).
    """
    paths = []
    checkpoint = checkpoint or estimator.latest_checkpoint()
    step = eval_result.get("global_step")
    done = done or {}
    for exporter in exporters:
        if exporter.name in done:
            path = done[exporter.name]
        else:
            export_path = fs.join(estimator.model_dir, "export", exporter.name)
            remove_stale_tmp(export_path)
            path = exporter.export(estimator, export_path, checkpoint, eval_result, is_the_final_export)
            if journal is not None:
                journal.exported(step, exporter.name, path)
        if path:
            paths.append(path)
    return paths


def _evaluate_and_export(estimator: Any, eval_spec: EvalSpec, journal: EvalJournal, step: int, path: str,
                         final: bool, recorded: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """Evaluates checkpoint ``path`` and runs the exporters, skipping what ``recorded`` (an earlier run) did."""
    journal.due(step, final)
    recorded = recorded or {}
    metrics = recorded.get("result")
    if metrics is None:
        metrics = estimator.evaluate(eval_spec.input_fn, steps=eval_spec.steps, hooks=list(eval_spec.hooks),
                                     checkpoint_path=path, name=eval_spec.name)
    else:
        log.info("Step %d was evaluated before: %s", step, metrics)
    exports = run_exporters(estimator, eval_spec.exporters, metrics, is_the_final_export=final, checkpoint=path,
                            journal=journal, done=recorded.get("exports"))
    return metrics, exports


def _redo_interrupted(estimator: Any, eval_spec: EvalSpec, journal: EvalJournal,
                      recorded: dict[int, dict[str, Any]]) -> tuple[dict, list[str], int | None]:
    """Evaluations and exports a kill interrupted, redone on their checkpoints; returns the newest redone."""
    metrics, exports, redone = {}, [], None
    for step in pending(recorded, [e.name for e in eval_spec.exporters]):
        path = fs.join(checkpoint_dir(estimator.model_dir), str(step))
        fs.forget_listings(path)
        if not fs.isdir(path):
            log.warning("The evaluation or export of step %d was interrupted and its checkpoint %s is gone; "
                        "not redone.", step, path)
            continue
        log.info("Redoing the interrupted evaluation/export of step %d.", step)
        metrics, exports = _evaluate_and_export(estimator, eval_spec, journal, step, path,
                                                recorded[step]["final"], recorded[step])
        redone = step
    return metrics, exports, redone


def _check_specs(train_spec: Any, eval_spec: Any) -> None:
    if not isinstance(train_spec, TrainSpec):
        raise TrainAndEvaluateError(f"train_spec must be a TrainSpec, got {type(train_spec).__name__}.")
    if not isinstance(eval_spec, EvalSpec):
        raise TrainAndEvaluateError(f"eval_spec must be an EvalSpec, got {type(eval_spec).__name__}.")
    names = [getattr(e, "name", None) for e in eval_spec.exporters]
    if len(set(names)) != len(names):
        raise TrainAndEvaluateError(f"EvalSpec.exporters need distinct names, got {names}.")
    if eval_spec.every_n_steps is not None and eval_spec.every_n_steps <= 0:
        raise TrainAndEvaluateError(f"EvalSpec.every_n_steps must be positive, got {eval_spec.every_n_steps}.")


def train_and_evaluate(estimator: Any, train_spec: TrainSpec, eval_spec: EvalSpec) -> tuple[dict, list[str]]:
    """Trains ``estimator``, evaluating and exporting as ``eval_spec`` says.

    Evaluates after a chunk of training when ``every_n_steps`` steps passed or
    ``throttle_secs`` elapsed since the last evaluation, and always at the end.
    Returns ``(final eval metrics, paths the exporters wrote at the end)``.
    """
    _check_specs(train_spec, eval_spec)
    lock = getattr(estimator, "writer_lock", contextlib.nullcontext)
    with lock():  # one trainer from the first train() to the last export
        return _train_and_evaluate(estimator, train_spec, eval_spec)


def _train_and_evaluate(estimator: Any, train_spec: TrainSpec, eval_spec: EvalSpec) -> tuple[dict, list[str]]:
    journal = EvalJournal(estimator.eval_dir(eval_spec.name))
    recorded = journal.recorded()  # before this run writes: every process decides alike
    metrics, exports, evaluated_step = _redo_interrupted(estimator, eval_spec, journal, recorded)
    exported_final = evaluated_step is not None and recorded[evaluated_step]["final"]
    last_eval_time = time.time()
    while True:
        before = estimator.latest_checkpoint()
        due = _EvalDue(eval_spec.every_n_steps, eval_spec.throttle_secs, last_eval_time)
        estimator.train(train_spec.input_fn, hooks=[*train_spec.hooks, due], max_steps=train_spec.max_steps)
        after = estimator.latest_checkpoint()
        step = int(fs.basename(after)) if after else 0
        # Done when nothing was trained, max_steps was reached, or the chunk ended before an
        # evaluation was due: the input ran out or another hook (early stopping) stopped it.
        finished = (after == before or not due.requested
                    or (train_spec.max_steps is not None and step >= train_spec.max_steps))
        if after and step != evaluated_step:
            metrics, exports = _evaluate_and_export(estimator, eval_spec, journal, step, after, finished,
                                                    recorded.get(step))
            evaluated_step, last_eval_time, exported_final = step, time.time(), finished
        elif after and finished and not exported_final:
            # The input ran out on the very call the last evaluation was due: that evaluation is
            # the final one, so the exporters run again on its checkpoint as the final export.
            metrics, exports = _evaluate_and_export(estimator, eval_spec, journal, step, after, True,
                                                    {"result": metrics})
        if finished:
            return metrics, exports


def _latest_step(store: CheckpointStore | None, model_dir: str) -> tuple[CheckpointStore | None, int | None]:
    if store is None:
        if not has_checkpoint_dir(model_dir):
            return None, None
        store = CheckpointStore(model_dir, read_only=True)
    return store, store.latest_step()


def continuous_evaluate(estimator: Any, eval_spec: EvalSpec, max_steps: int | None, poll_secs: float = 5.0,
                        timeout_secs: float | None = None) -> tuple[dict[str, Any] | None, list[str]]:
    """Watches ``estimator.model_dir`` and evaluates each new checkpoint once, then runs the exporters.

    The evaluator process of a cluster (TF_CONFIG task ``evaluator``) or
    ``scripts/evaluate.py --continuous``: it never trains or writes checkpoints.
    Polls every ``poll_secs``; when several checkpoints appeared since the last
    look, only the newest is evaluated (tf.estimator's behaviour); waits
    ``eval_spec.start_delay_secs`` first and at least ``eval_spec.throttle_secs``
    between evaluations. Stops after evaluating a step >= ``max_steps``, or
    when no new checkpoint appeared for ``timeout_secs`` (None: wait forever).
    Returns ``(last metrics or None, paths the last exporters wrote)``.
    """
    if max_steps is not None and max_steps <= 0:
        raise TrainAndEvaluateError(f"continuous_evaluate: max_steps must be positive or None, got {max_steps}.")
    if poll_secs <= 0:
        raise TrainAndEvaluateError(f"continuous_evaluate: poll_secs must be positive, got {poll_secs}.")
    journal = EvalJournal(estimator.eval_dir(eval_spec.name))
    recorded = journal.recorded()
    metrics, exports, evaluated = _redo_interrupted(estimator, eval_spec, journal, recorded)
    if evaluated is not None and max_steps is not None and evaluated >= max_steps:
        log.info("Redid the final step %d (max_steps %d); stopping.", evaluated, max_steps)
        return metrics, exports
    time.sleep(max(0.0, eval_spec.start_delay_secs))
    store, seen, metrics = None, None, metrics or None
    last_eval_time, last_new_time = float("-inf"), time.time()
    while True:
        store, step = _latest_step(store, estimator.model_dir)
        if step != seen:
            seen, last_new_time = step, time.time()
        final = step is not None and max_steps is not None and step >= max_steps
        fresh = step is not None and step != evaluated
        if fresh and (final or time.time() - last_eval_time >= eval_spec.throttle_secs):
            path = store.step_path(step)
            last_eval_time = time.time()
            try:
                metrics, exports = _evaluate_and_export(estimator, eval_spec, journal, step, path, final,
                                                        recorded.get(step))
            except (FileNotFoundError, ValueError) as error:
                fs.forget_listings(path)
                if fs.isdir(path):
                    raise
                log.warning("Checkpoint %s was deleted before it could be evaluated (%s); waiting for the next.",
                            path, error)
                evaluated = step
                continue
            evaluated = step
            if final:
                log.info("Evaluated the final step %d (max_steps %d); stopping.", step, max_steps)
                return metrics, exports
            continue
        if timeout_secs is not None and time.time() - last_new_time > timeout_secs:
            log.info("No new checkpoint in %s for %.0f s; stopping the continuous evaluation.",
                     estimator.model_dir, timeout_secs)
            return metrics, exports
        time.sleep(poll_secs)
