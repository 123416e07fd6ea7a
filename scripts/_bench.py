"""Helpers shared by the benchmark scripts (not part of the library)."""

from __future__ import annotations

import time

from estimator import Hook


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
