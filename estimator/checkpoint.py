"""Checkpoints through orbax-checkpoint: the training state, the input position, metadata.

A checkpoint lives in ``model_dir/checkpoints/<step>/`` with three items:
``state`` (the training-state pytree), ``input`` (the input iterator's JSON
state, or null) and ``meta`` (JSON: step, wall time, JAX version). Orbax writes
each checkpoint into a temporary directory and renames it when complete, so a
write killed half-way is never listed as a step (invariant 2 of the design).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)

CHECKPOINT_SUBDIR = "checkpoints"


class CheckpointNotFoundError(FileNotFoundError):
    """A checkpoint path or directory that was asked for holds no complete checkpoint."""


def checkpoint_dir(model_dir: str) -> str:
    """Where the checkpoints of ``model_dir`` live."""
    return os.path.join(os.path.abspath(model_dir), CHECKPOINT_SUBDIR)


def parse_checkpoint_path(path: str) -> tuple[str, int | None]:
    """Splits a user path into (model_dir-like root, step or None for latest).

    Accepts ``model_dir``, ``model_dir/checkpoints`` or ``model_dir/checkpoints/<step>``.
    """
    path = os.path.abspath(path)
    base = os.path.basename(path)
    parent = os.path.dirname(path)
    if base.isdigit() and os.path.basename(parent) == CHECKPOINT_SUBDIR:
        return os.path.dirname(parent), int(base)
    if base == CHECKPOINT_SUBDIR:
        return parent, None
    return path, None


class CheckpointStore:
    """Saves and restores training checkpoints of one model_dir.

    Args:
      model_dir: the Estimator's model_dir.
      keep_checkpoint_max: newest checkpoints kept; None keeps all.
      read_only: open for restore only (evaluate/predict/warm start).
    """

    def __init__(self, model_dir: str, keep_checkpoint_max: int | None = 5, read_only: bool = False):
        self.directory = checkpoint_dir(model_dir)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep_checkpoint_max,
            create=not read_only,
            read_only=read_only,
            enable_async_checkpointing=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "input": ocp.JsonCheckpointHandler(),
                "meta": ocp.JsonCheckpointHandler(),
            },
        )

    def latest_step(self) -> int | None:
        """The newest complete step, or None."""
        self._manager.reload()
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """All complete steps, oldest first."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def step_path(self, step: int) -> str:
        """The directory of one step's checkpoint."""
        return os.path.join(self.directory, str(step))

    def save(self, step: int, state: Any, input_state: Any = None) -> None:
        """Starts writing a checkpoint of ``state`` at ``step`` (finished in the background)."""
        meta = {"step": int(step), "time": time.time(), "jax_version": jax.__version__}
        self._manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                input=ocp.args.JsonSave({"iterator": input_state}),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, Any]:
        """Reads ``(state, input_state)`` of ``step``; ``abstract_state`` gives shapes and shardings."""
        if step not in self.all_steps():
            raise CheckpointNotFoundError(
                f"No complete checkpoint for step {step} in {self.directory}; "
                f"available steps: {self.all_steps()}."
            )
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                input=ocp.args.JsonRestore(),
            ),
        )
        return restored["state"], (restored["input"] or {}).get("iterator")

    def restore_input(self, step: int) -> Any:
        """Reads only the input iterator's state of ``step`` (None when the input had none)."""
        restored = self._manager.restore(step, args=ocp.args.Composite(input=ocp.args.JsonRestore()))
        return (restored["input"] or {}).get("iterator")

    def restore_arrays(self, step: int) -> Any:
        """Reads the state of ``step`` onto this process's first device, whatever topology wrote it.

        For evaluation, prediction, export and warm start: a checkpoint written by
        several processes or devices is read back by one (orbax refuses a restore
        without a target when the device set differs).
        """
        metadata = self._manager.item_metadata(step)["state"]
        tree = getattr(metadata, "tree", metadata)
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=device), tree)
        restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
        return restored["state"]

    def wait(self) -> None:
        """Blocks until background writes are complete."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finishes pending writes and releases the manager."""
        self._manager.close()
