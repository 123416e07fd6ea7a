"""One cadence for "every N steps / every N seconds": summaries, logs, checkpoints, hooks, evaluations.

A step cadence fires when a multiple of ``every_steps`` is crossed (step 10
with ``every_steps=10``, whatever the calls' sizes), a time cadence when
``every_secs`` passed since it last fired. ``fire`` restarts both clocks.
"""

from __future__ import annotations

import time


def crossed(before: int, step: int, every: int | None) -> bool:
    """Whether a multiple of ``every`` lies in (before, step] (never when ``every`` is None or 0)."""
    return bool(every) and step // every != before // every


class Cadence:
    """Fires every ``every_steps`` steps and/or every ``every_secs`` seconds (None or 0: never by that clock)."""

    def __init__(self, every_steps: int | None = None, every_secs: float | None = None,
                 step: int = 0, now: float | None = None):
        self.every_steps = every_steps
        self.every_secs = every_secs
        self.last_step = step
        self.last_time = time.time() if now is None else now

    def steps_due(self, step: int) -> bool:
        """Whether a multiple of ``every_steps`` lies in (last_step, step]."""
        return crossed(self.last_step, step, self.every_steps)

    def secs_due(self, now: float | None = None) -> bool:
        """Whether ``every_secs`` passed since the cadence last fired."""
        now = time.time() if now is None else now
        return self.every_secs is not None and now - self.last_time >= self.every_secs

    def due(self, step: int, now: float | None = None) -> bool:
        """Either clock."""
        return self.steps_due(step) or self.secs_due(now)

    def fire(self, step: int, now: float | None = None) -> tuple[int, float]:
        """Restarts both clocks at ``step``; returns the steps and seconds since the last fire."""
        now = time.time() if now is None else now
        since = (step - self.last_step, now - self.last_time)
        self.last_step, self.last_time = step, now
        return since
