"""Hooks: code that runs around the train / evaluate loops.

A hook sees ``begin`` once, ``before_run`` / ``after_run`` around every device
call (one call runs ``steps_per_loop`` steps), and ``end`` once. ``after_run``
gets the step reached and the call's loss as a device array: reading it
(``float(values.loss)``) waits for the device, so hooks read only when they need to.
"""

from __future__ import annotations

import logging
import math
from typing import Any, NamedTuple

from estimator import distribute
from estimator.cadence import Cadence
from estimator.eval_history import read_eval_history

log = logging.getLogger("estimator")


class NanLossDuringTrainingError(RuntimeError):
    """The training loss became NaN or infinite."""


def fails_on_nan(hooks: list[Hook]) -> bool:
    """The NaN policy of a train loop: raise, unless a ``NanLossHook(fail_on_nan_loss=False)`` is among ``hooks``."""
    return not any(isinstance(h, NanLossHook) and not h.fail_on_nan_loss for h in hooks)


def on_nan_loss(step: int, fail: bool, loss: float | None = None) -> None:
    """The one reaction to a NaN/inf loss at ``step``: raise ``NanLossDuringTrainingError``, or log it.

    Either way training stops and the diverged state is not saved (the caller's part).
    """
    value = "NaN or inf" if loss is None else loss
    message = (f"Model diverged with loss = {value} at step {step}; training stopped and the diverged state was "
               "not saved. Lower the learning rate, check the inputs for NaN/inf, or clip gradients.")
    if fail:
        raise NanLossDuringTrainingError(message)
    log.error(message)


class RunValues(NamedTuple):
    """What one device call produced.

    Attributes:
      step: global step after the call.
      loss: mean loss over the call's steps (device array).
      steps: train steps the call ran.
    """

    step: int
    loss: Any
    steps: int = 1


class RunContext:
    """Passed to hooks: the running Estimator and a way to stop the loop."""

    def __init__(self, estimator: Any, mode: str):
        self.estimator = estimator
        self.mode = mode
        self.stop_requested = False

    def request_stop(self) -> None:
        """Ends the loop after the current call (a checkpoint is still written)."""
        self.stop_requested = True


class Hook:
    """Base class: override any of the four methods."""

    def begin(self, run_context: RunContext, step: int) -> None:
        """Called once before the first call, with the starting step."""

    def before_run(self, run_context: RunContext, step: int) -> None:
        """Called before each device call."""

    def after_run(self, run_context: RunContext, values: RunValues) -> None:
        """Called after each device call."""

    def end(self, run_context: RunContext, step: int) -> None:
        """Called once after the loop."""


class StopAtStepHook(Hook):
    """Stops after ``num_steps`` more steps or at ``last_step`` (one of the two)."""

    def __init__(self, num_steps: int | None = None, last_step: int | None = None):
        if (num_steps is None) == (last_step is None):
            raise ValueError("StopAtStepHook: give exactly one of num_steps and last_step.")
        self._num_steps = num_steps
        self._last_step = last_step

    def begin(self, run_context: RunContext, step: int) -> None:
        """Fixes the last step from the starting step."""
        if self._num_steps is not None:
            self._last_step = step + self._num_steps

    def after_run(self, run_context: RunContext, values: RunValues) -> None:
        """Requests stop once the last step is reached."""
        if values.step >= self._last_step:
            run_context.request_stop()


class NanLossHook(Hook):
    """Checks the loss after every call; raises (or stops) on NaN/inf. Reads the loss each call.

    With ``fail_on_nan_loss=False`` training stops without an error: the
    diverged state is not saved, the latest checkpoint stays the last good one.
    """

    def __init__(self, fail_on_nan_loss: bool = True):
        self._fail = fail_on_nan_loss

    @property
    def fail_on_nan_loss(self) -> bool:
        """Whether a NaN/inf loss raises ``NanLossDuringTrainingError`` (else training just stops)."""
        return self._fail

    def after_run(self, run_context: RunContext, values: RunValues) -> None:
        """Reads the loss and reacts to a non-finite value."""
        loss = float(values.loss)
        if not math.isfinite(loss):
            on_nan_loss(values.step, self._fail, loss)
            run_context.request_stop()


class LoggingHook(Hook):
    """Logs the loss (and step rate) every ``every_n_steps`` steps."""

    def __init__(self, every_n_steps: int = 100):
        self._cadence = Cadence(every_n_steps)

    def begin(self, run_context: RunContext, step: int) -> None:
        """Remembers where logging starts."""
        self._cadence.fire(step)

    def after_run(self, run_context: RunContext, values: RunValues) -> None:
        """Logs when a multiple of ``every_n_steps`` was crossed."""
        if self._cadence.steps_due(values.step):
            log_loss(values.loss, values.step, self._cadence.fire(values.step)[1])


def log_loss(loss: Any, step: int, secs: float) -> None:
    """The training log line: ``loss = ..., step = N (T sec)``."""
    log.info("loss = %.6g, step = %d (%.3f sec)", float(loss), step, secs)


class ProfilerHook(Hook):
    """Writes a ``jax.profiler`` trace of steps [start_step, start_step + num_steps) under ``logdir``.

    TensorBoard's profile plugin reads it (``tensorboard --logdir model_dir``).
    """

    def __init__(self, logdir: str | None = None, start_step: int = 10, num_steps: int = 5):
        self._logdir = logdir
        self._start = start_step
        self._stop_at = start_step + num_steps
        self._active = False

    def before_run(self, run_context: RunContext, step: int) -> None:
        """Starts the trace when the window opens."""
        import jax

        if not self._active and self._start <= step < self._stop_at:
            logdir = self._logdir or run_context.estimator.model_dir
            jax.profiler.start_trace(logdir)
            self._active = True

    def after_run(self, run_context: RunContext, values: RunValues) -> None:
        """Stops the trace when the window closes."""
        if self._active and values.step >= self._stop_at:
            self._finish(values)

    def end(self, run_context: RunContext, step: int) -> None:
        """Stops a trace still open."""
        if self._active:
            self._finish(None)

    def _finish(self, values: RunValues | None) -> None:
        import jax

        if values is not None:
            jax.block_until_ready(values.loss)
        jax.profiler.stop_trace()
        self._active = False


class EarlyStoppingHook(Hook):
    """Stops training when an eval metric stopped improving (tf's ``stop_if_no_*_hook``).

    Reads the evaluation history of ``eval_dir`` every ``run_every_steps`` steps;
    stops when the best value of ``metric_name`` is more than
    ``max_steps_without_improvement`` steps old (and at least ``min_steps`` ran).
    """

    def __init__(self, eval_dir: str, metric_name: str, max_steps_without_improvement: int,
                 higher_is_better: bool = False, min_steps: int = 0, run_every_steps: int = 1):
        self._eval_dir = eval_dir
        self._metric = metric_name
        self._patience = max_steps_without_improvement
        self._higher = higher_is_better
        self._min_steps = min_steps
        self._every = run_every_steps
        self._last_check = -1

    def should_stop(self) -> bool:
        """Whether the history shows no improvement for longer than the patience."""
        history = [r for r in read_eval_history(self._eval_dir) if self._metric in r]
        if not history:
            return False
        sign = -1.0 if self._higher else 1.0
        best = min(history, key=lambda r: (sign * r[self._metric], r["global_step"]))
        latest = max(r["global_step"] for r in history)
        return latest >= self._min_steps and latest - best["global_step"] > self._patience

    def after_run(self, run_context: RunContext, values: RunValues) -> None:
        """Checks the history every ``run_every_steps`` steps (process 0's verdict binds all processes)."""
        if values.step - self._last_check < self._every:
            return
        self._last_check = values.step
        if distribute.agreed(self.should_stop()):
            log.info("Early stopping: %s did not improve for %d steps.", self._metric, self._patience)
            run_context.request_stop()


def stop_if_no_decrease_hook(estimator: Any, metric_name: str, max_steps_without_decrease: int,
                             eval_dir: str | None = None, min_steps: int = 0,
                             run_every_steps: int = 1) -> EarlyStoppingHook:
    """Stops training when ``metric_name`` did not decrease for that many steps."""
    return EarlyStoppingHook(eval_dir or estimator.eval_dir(), metric_name, max_steps_without_decrease,
                             False, min_steps, run_every_steps)


def stop_if_no_increase_hook(estimator: Any, metric_name: str, max_steps_without_increase: int,
                             eval_dir: str | None = None, min_steps: int = 0,
                             run_every_steps: int = 1) -> EarlyStoppingHook:
    """Stops training when ``metric_name`` did not increase for that many steps."""
    return EarlyStoppingHook(eval_dir or estimator.eval_dir(), metric_name, max_steps_without_increase,
                             True, min_steps, run_every_steps)


class ProgressHook(Hook):
    """A tqdm progress bar of steps done out of ``max_steps``, with rate and time left."""

    def __init__(self, max_steps: int | None):
        self._total = max_steps
        self._bar: Any = None

    def begin(self, run_context: RunContext, step: int) -> None:
        """Opens the bar at the starting (possibly resumed) step."""
        from tqdm.auto import tqdm

        self._bar = tqdm(total=self._total, initial=step, unit="step", dynamic_ncols=True, mininterval=1.0)

    def after_run(self, run_context: RunContext, values: RunValues) -> None:
        """Advances the bar by the steps the call ran."""
        self._bar.update(values.steps)

    def end(self, run_context: RunContext, step: int) -> None:
        """Closes the bar."""
        self._bar.close()
