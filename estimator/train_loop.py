"""One call of ``Estimator.train``: input, state, steps, hooks, summaries, checkpoints, signals.

Reads top to bottom: ``run`` restores the input position (read once), draws
the first batch, makes or restores the ``TrainState``, then ``_loop`` calls the
jitted step until the last step, a hook's stop, a signal or the input's end,
writing summaries, log lines and checkpoints on their ``Cadence``. A NaN/inf
loss follows the one policy of ``hooks.on_nan_loss``: the diverged state is
never saved.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax

from estimator import distribute, train_core
from estimator._prefetch import Prefetcher
from estimator.cadence import Cadence, crossed
from estimator.checkpoint import CheckpointCorruptError
from estimator.hooks import Hook, RunContext, RunValues, fails_on_nan, log_loss, on_nan_loss
from estimator.spec import ModeKeys
from estimator.summary import SummaryWriter, learning_rate_of
from estimator.train_core import TrainState
from input_pipelines import fs

if TYPE_CHECKING:
    from estimator.estimator import Estimator

log = logging.getLogger("estimator")


class TrainingInterruptedError(RuntimeError):
    """Training stopped on SIGTERM or SIGINT after saving a checkpoint; rerun to resume.

    ``exit_code`` is what a script should exit with: 128 + the signal number (143
    for SIGTERM, 130 for Ctrl-C), the status of a process the signal killed, so a
    scheduler restarts a preempted job as before (exit 0 would mark it finished).
    """

    def __init__(self, signum: int, step: int, path: str | None):
        self.signum, self.step, self.path = signum, step, path
        self.exit_code = 128 + signum
        saved = f"saved the checkpoint {path}" if path else "no checkpoint was saved"
        super().__init__(f"Training stopped by {signal.Signals(signum).name} at step {step}; {saved}. "
                         "Run the same command again to resume.")


def run_training(est: Estimator, input_fn: Callable, hooks: list[Hook], steps: int | None,
                 max_steps: int | None) -> Estimator:
    """``Estimator.train`` under the model_dir's lock: resume from the latest usable checkpoint, run a ``TrainLoop``.

    A latest checkpoint found damaged before any step ran is quarantined and the one before it used.
    """
    with est.writer_lock():
        store = est._checkpoints()
        while True:  # each pass past the first moved one damaged checkpoint aside
            saved_step = store.usable_latest_step(quarantine=True)
            start_step = saved_step or 0
            if max_steps is not None and start_step >= max_steps:
                log.info("Skipping training since max_steps has already saved (step %d >= %d).",
                         start_step, max_steps)
                return est
            last_step = max_steps if max_steps is not None else (start_step + steps if steps is not None else None)
            loop = TrainLoop(est, input_fn, hooks, saved_step, last_step)
            try:
                return loop.run()
            except CheckpointCorruptError as error:
                if loop.started or saved_step is None:
                    raise
                log.warning("%s Falling back to the checkpoint before it.", error)
                store.quarantine(saved_step)


class TrainLoop:
    """One call of ``Estimator.train`` from ``saved_step`` (None: fresh) to ``last_step`` (None: the input's end)."""

    def __init__(self, est: Estimator, input_fn: Callable, hooks: list[Hook], saved_step: int | None,
                 last_step: int | None):
        self.est = est
        self.config = est.config
        self.hooks = hooks
        self.saved_step = saved_step
        self.start_step = saved_step or 0
        self.started = False  # True once a step ran: a damaged checkpoint can no longer be skipped
        self.last_step = last_step
        self.store = est._checkpoints()
        self.input_fn = input_fn
        self.chief = jax.process_index() == 0
        self.writer = SummaryWriter(est.model_dir) if self.chief else None
        self.fail_on_nan = fails_on_nan(hooks)
        self.diverged_at: int | None = None
        self.signals = _StopSignals()
        self.interrupted_at: tuple[int, str | None] = (self.start_step, None)
        self.summaries = Cadence(self.config.save_summary_steps, step=self.start_step)
        self.logs = Cadence(self.config.log_step_count_steps, step=self.start_step)
        self.checkpoints = Cadence(self.config.save_checkpoints_steps, self.config.checkpoint_every_secs,
                                   step=self.start_step)
        self.examples = 0  # since the last summary

    def run(self) -> Estimator:
        """Trains; raises ``TrainingInterruptedError`` after a signal's checkpoint."""
        with self.signals:
            self._run()
        if self.signals.received is not None:
            step, path = self.interrupted_at
            raise TrainingInterruptedError(self.signals.received, step, path)
        return self.est

    def _run(self) -> None:
        iterator = self.est._input_iterator(self.input_fn, ModeKeys.TRAIN)
        group_size = 1 if self.config.debug else self.config.steps_per_loop
        budget = None if self.last_step is None else self.last_step - self.start_step
        prefetcher = None
        try:
            if self.saved_step is not None:
                input_state = self.store.restore_input(self.saved_step)  # the one read of the input position
                if input_state is not None and hasattr(iterator, "restore"):
                    iterator.restore(input_state)
            prefetcher = self.est._prefetcher(iterator, ModeKeys.TRAIN, group_size, budget)
            first = next(prefetcher, None)
            if first is None:
                log.warning("train: input_fn produced no batches; nothing to do.")
                return
            state = self._initial_state(*_one_batch(first))
            self.started = True
            self._loop(state, first, prefetcher)
        finally:
            if prefetcher is not None:
                prefetcher.close()
            try:
                self.store.wait()
            finally:
                self._close_writer()

    def _initial_state(self, features: Any, labels: Any) -> TrainState:
        est, seed = self.est, self.config.random_seed
        transformed = est._transformed(ModeKeys.TRAIN)
        optimizer = est._train_functions(features, labels)[0]
        if self.saved_step is None:
            log.info("Create new training state (seed %d).", seed)
            self._record_config()
            state = train_core.init_state(transformed, optimizer, seed, features, labels, est._warm_start(),
                                          jit=not self.config.debug)
            return jax.device_put(state, est._state_shardings(state))
        abstract = train_core.abstract_state(transformed, optimizer, seed, features, labels)
        target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                              abstract, est._state_shardings(abstract))
        state = TrainState.from_tree(self.store.restore(self.saved_step, target.to_tree()))
        log.info("Restored training state from %s", self.store.step_path(self.saved_step))
        return state

    def _record_config(self) -> None:
        if not self.chief:
            return
        payload = {"run_config": self.config.to_dict(), "params": self.est.params}
        fs.write_atomically(fs.join(self.est.model_dir, "run_config.json"),
                            json.dumps(payload, indent=2, sort_keys=True, default=str))
        self.writer.text("run_config", payload)

    def _loop(self, state: TrainState, first: Any, prefetcher: Prefetcher) -> None:
        _, train_step, train_loop = self.est._train_functions(*_one_batch(first))
        context = RunContext(self.est, ModeKeys.TRAIN)
        step = self.start_step
        for hook in self.hooks:
            hook.begin(context, step)
        acc = train_core.zero_accumulator(self.est._mesh)
        group, input_state, last_saved, loss = first, None, self.start_step, None
        while group is not None:
            for hook in self.hooks:
                hook.before_run(context, step)
            fn = train_loop if group.stacked else train_step
            state, acc, loss = fn(state, acc, group.features, group.labels)
            step += group.size
            input_state = group.input_state
            self.examples += group.examples
            values = RunValues(step, loss, group.size)
            for hook in self.hooks:
                hook.after_run(context, values)
            acc = self._maybe_summarize(state, acc, step)
            self._maybe_log(loss, step)
            if self._checkpoint_due(step, group.size):
                self._save(state, acc, step, input_state)
                last_saved = step
            if context.stop_requested or (self.last_step is not None and step >= self.last_step):
                break
            if self._signalled(step, group.size):
                log.warning("%s received: saving a checkpoint at step %d and stopping.",
                            signal.Signals(self.signals.received).name, step)
                break
            group = next(prefetcher, None)
        if step != last_saved:
            self._save(state, acc, step, input_state)
        self.interrupted_at = (step, self.store.step_path(step) if self.diverged_at is None else None)
        for hook in self.hooks:
            hook.end(context, step)
        log.info("Loss for final step: %s.", float(loss) if step > self.start_step else "n/a")

    def _maybe_summarize(self, state: TrainState, acc: Any, step: int) -> Any:
        """Writes the loss, rates and learning rate when due; returns the (emptied when written) accumulator."""
        if not self.summaries.steps_due(step):
            return acc
        self._check_finite(acc)
        steps, secs = self.summaries.fire(step)
        host = jax.device_get(acc)
        scalars = {"loss": host["loss_sum"] / max(1, host["count"])}
        if secs > 0:
            scalars["global_step/sec"] = steps / secs
            scalars["examples/sec"] = self.examples / secs
        self.examples = 0
        lr = learning_rate_of(state.opt_state)
        if lr is not None:
            scalars["learning_rate"] = float(lr)
        if self.writer is not None:
            self.writer.scalars(scalars, step)
        if "global_step/sec" in scalars and self.chief:
            log.info("global_step/sec: %.4g", scalars["global_step/sec"])
        return train_core.zero_accumulator(self.est._mesh)

    def _maybe_log(self, loss: Any, step: int) -> None:
        if self.logs.steps_due(step):
            secs = self.logs.fire(step)[1]
            if self.chief:
                log_loss(loss, step, secs)

    def _checkpoint_due(self, step: int, size: int) -> bool:
        due = self.checkpoints.steps_due(step)
        if not due and self.checkpoints.every_secs is not None and self._clock_check(step - size, step):
            # Saving is collective: with several processes, process 0's clock decides for all.
            due = distribute.agreed(self.checkpoints.secs_due())
        if due:
            self.checkpoints.fire(step)
        return due

    def _signalled(self, step: int, size: int) -> bool:
        """Whether a stop signal arrived; with several processes, whether any process got one.

        Agreeing costs a sync, so several processes look when the checkpoint clock is looked at.
        """
        if jax.process_count() == 1:
            return self.signals.received is not None
        if not self._clock_check(step - size, step):
            return False
        signums = distribute.gather_ints(self.signals.received or 0)
        received = next((s for s in signums if s), 0)
        if received and self.signals.received is None:
            self.signals.received = received
        return bool(received)

    def _clock_check(self, before: int, step: int) -> bool:
        """Whether to look at the clocks (checkpoint time, signals) after the call that went ``before`` -> ``step``.

        One process: every call. Several: when a summary is written (a host-device
        sync anyway; every call if summaries are off), since agreeing costs a sync.
        """
        every = self.config.save_summary_steps
        return jax.process_count() == 1 or not every or crossed(before, step, every)

    def _check_finite(self, acc: Any) -> None:
        """Applies the NaN policy to the first non-finite loss in ``acc`` (once; it raises by default)."""
        nan_step = int(acc["nan_step"])
        if nan_step < 0 or self.diverged_at is not None:
            return
        self.diverged_at = nan_step
        if self.fail_on_nan:  # otherwise a NanLossHook(fail_on_nan_loss=False) logged it and stopped the loop
            on_nan_loss(nan_step, fail=True)

    def _save(self, state: TrainState, acc: Any, step: int, input_state: Any) -> None:
        self._check_finite(acc)
        if self.diverged_at is not None:
            log.error("Not saving a checkpoint for step %d: the loss became NaN or infinite at step %d. "
                      "The latest checkpoint, step %s, is the last one before it.",
                      step, self.diverged_at, self.store.latest_step())
            return
        log.info("Saving checkpoints for %d into %s.", step, self.store.directory)
        self.store.save(step, state.to_tree(), input_state)
        if self.writer is not None:
            self.writer.flush()

    def _close_writer(self) -> None:
        """Closes the event file; a failure (a full disk) is a warning, not an error hiding the first one."""
        if self.writer is None:
            return
        try:
            self.writer.close()
        except OSError as error:
            log.warning("Could not close the TensorBoard event file in %s: %s", self.est.model_dir, error)


class _StopSignals:
    """Within ``with``: SIGTERM and SIGINT set ``received`` instead of killing the process.

    The train loop saves a checkpoint at the next step boundary and stops; later
    signals are logged and ignored until the save is complete, so a signal never
    aborts a checkpoint write. Handlers are installed from the main thread only.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signum
            log.warning("%s received: training stops at the next step boundary after saving a checkpoint.",
                        signal.Signals(signum).name)
        else:
            log.warning("%s received again: still saving the checkpoint; kill -9 aborts.", signal.Signals(signum).name)

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def _one_batch(group: Any) -> tuple[Any, Any]:
    """The first batch of a group (unstacked), for initialisation shapes."""
    if not group.stacked:
        return group.features, group.labels
    features = jax.tree.map(lambda x: x[0], group.features)
    labels = None if group.labels is None else jax.tree.map(lambda x: x[0], group.labels)
    return features, labels
