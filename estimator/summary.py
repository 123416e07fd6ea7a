"""TensorBoard event files through tensorboardX, with tf.estimator's tag names.

Only process 0 writes, so a multi-process job produces one set of curves.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax


class SummaryWriter:
    """Scalars and text into one event-file directory (a no-op on processes other than 0)."""

    def __init__(self, logdir: str):
        self.logdir = logdir
        self._writer = None
        if jax.process_index() == 0:
            from tensorboardX import SummaryWriter as _TBWriter

            os.makedirs(logdir, exist_ok=True)
            self._writer = _TBWriter(logdir=logdir, flush_secs=10)

    def scalars(self, values: dict[str, Any], step: int) -> None:
        """Writes each scalar under its tag at ``step``."""
        if self._writer is None:
            return
        for tag, value in values.items():
            self._writer.add_scalar(tag, float(value), global_step=int(step))

    def text(self, tag: str, payload: Any, step: int = 0) -> None:
        """Writes a JSON-able payload as a text summary (shown in TensorBoard's Text tab)."""
        if self._writer is None:
            return
        body = payload if isinstance(payload, str) else json.dumps(payload, indent=2, sort_keys=True, default=str)
        self._writer.add_text(tag, f"```\n{body}\n```", global_step=int(step))

    def flush(self) -> None:
        """Writes buffered events to disk."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flushes and closes the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def learning_rate_of(opt_state: Any) -> Any | None:
    """The learning rate an ``optax.inject_hyperparams`` optimizer exposes, else None."""
    found = []

    def visit(node: Any) -> None:
        hyper = getattr(node, "hyperparams", None)
        if isinstance(hyper, dict) and "learning_rate" in hyper:
            found.append(hyper["learning_rate"])
            return
        if isinstance(node, tuple | list):
            for child in node:
                visit(child)
        elif isinstance(node, dict):
            for child in node.values():
                visit(child)
        elif hasattr(node, "inner_state"):
            visit(node.inner_state)

    visit(opt_state)
    return found[0] if found else None
