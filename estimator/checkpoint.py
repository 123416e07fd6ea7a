"""Checkpoints through orbax-checkpoint: the training state, the input position, metadata.

A checkpoint lives in ``model_dir/checkpoints/<step>/`` with three items:
``state`` (the training-state pytree ``{step, params, model_state, opt_state,
rng}``), ``input`` (JSON ``{"iterators": [state of process 0, state of process
1, ...]}``, each entry an input iterator's state or null) and ``meta`` (JSON:
step, wall time, JAX version, process count). Orbax writes each checkpoint into
a temporary directory and renames it when complete, so a write killed half-way
is never listed as a step (invariant 2 of the design). On gs:// (no rename) it
writes the step in place and adds ``commit_success.txt`` last; a step without
it is not listed, and is removed before that step is written again. s3:// is
refused (``check_checkpoint_location``): orbax 0.12 has no S3 path for arrays.

Every process reads its own shard of the input, so every process has its own
input position: ``save`` gathers them all (a JAX all-gather of their JSON
bytes; orbax's JSON item is written by the primary process only) and
``restore_input`` hands each process its own entry. A checkpoint written by a
different number of processes has positions that do not map to this job's
shards: its input restarts from the beginning, with a warning (the parameters
and optimizer state still resume). Checkpoints of the older single-process
layout ``{"iterator": state}`` are read as one process's.
"""

from __future__ import annotations

import errno
import importlib.metadata
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from estimator import distribute
from input_pipelines import fs

log = logging.getLogger(__name__)

CHECKPOINT_SUBDIR = "checkpoints"
CORRUPT_SUBDIR = "corrupt_checkpoints"
# What orbax raises for a missing item, a missing or truncated file, or a damaged JSON item.
_READ_ERRORS = (KeyError, ValueError, OSError, EOFError)


class CheckpointNotFoundError(FileNotFoundError):
    """A checkpoint path or directory that was asked for holds no complete checkpoint."""


class CheckpointMismatchError(ValueError):
    """A checkpoint's training state does not fit the current model or optimizer."""


class CheckpointCorruptError(ValueError):
    """A checkpoint on disk is incomplete or damaged (not a model change); the message names its path."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); earlier checkpoints are intact."""


class InputStateError(TypeError):
    """The input iterator's ``state()`` is not JSON data, so it cannot be checkpointed."""


class UnsupportedCheckpointLocationError(ValueError):
    """The installed orbax-checkpoint cannot write or read checkpoints at this URL (e.g. s3://)."""


# URL schemes orbax-checkpoint hands to a remote tensorstore driver (it sends every other
# scheme to its local-file driver, which mangles the URL).
_ORBAX_REMOTE_SCHEMES = ("gs",)


def check_checkpoint_location(model_dir: str) -> None:
    """Raises ``UnsupportedCheckpointLocationError`` when orbax cannot checkpoint under ``model_dir``.

    Local paths (also mounted buckets) and gs:// work. orbax-checkpoint 0.12.x builds the
    tensorstore spec of the arrays itself and gives a remote driver only to gs:// paths: an
    s3:// path goes to its local-file driver, which refuses it (``s3:/b`` is not absolute)
    after part of the checkpoint landed in a local directory named ``s3:``.
    """
    if not fs.is_url(model_dir) or fs.protocol(model_dir) in _ORBAX_REMOTE_SCHEMES:
        return
    try:
        version = importlib.metadata.version("orbax-checkpoint")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    scheme = fs.protocol(model_dir)
    raise UnsupportedCheckpointLocationError(
        f"model_dir {model_dir!r}: the installed orbax-checkpoint {version} cannot write checkpoints to "
        f"{scheme}:// (it passes such paths to its local-file driver). Use a gs:// model_dir, a local path, "
        f"or mount the bucket and give its mount point (s3fs-fuse, mountpoint-s3, gcsfuse). Input data, "
        f"exports (export_saved_model) and TensorBoard events can stay on {scheme}://.")


def checkpoint_dir(model_dir: str) -> str:
    """Where the checkpoints of ``model_dir`` live (a URL stays a URL)."""
    return fs.join(fs.absolute(model_dir), CHECKPOINT_SUBDIR)


def _see_other_writers(directory: str) -> None:
    """Forgets cached bucket listings, so that steps another process wrote or deleted are seen.

    fsspec caches listings without expiry, in our file system and in the one orbax lists
    steps through (etils.epath uses fsspec for gs:// when TensorFlow is absent): a continuous
    evaluator or a reader would otherwise never see a new checkpoint.
    """
    if fs.is_url(directory):
        from etils.epath import backend

        fs.forget_listings(directory)
        backend.fsspec_backend.fs(directory).invalidate_cache()


def has_checkpoint_dir(model_dir: str) -> bool:
    """Whether ``model_dir`` has a checkpoint directory (as it is now, also on a bucket)."""
    directory = checkpoint_dir(model_dir)
    _see_other_writers(directory)
    return fs.isdir(directory)


def parse_checkpoint_path(path: str) -> tuple[str, int | None]:
    """Splits a user path into (model_dir-like root, step or None for latest).

    Accepts ``model_dir``, ``model_dir/checkpoints`` or ``model_dir/checkpoints/<step>``.
    """
    path = fs.absolute(path)
    base = fs.basename(path)
    parent = fs.dirname(path)
    if base.isdigit() and fs.basename(parent) == CHECKPOINT_SUBDIR:
        return fs.dirname(parent), int(base)
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
        check_checkpoint_location(model_dir)
        self.directory = checkpoint_dir(model_dir)
        self._warned_steps: set[int] = set()
        self._pending: int | None = None  # the step whose write may still run in the background
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else keep_checkpoint_max,
            save_interval_steps=0 if read_only else 1,
            create=not read_only,
            read_only=read_only,
            enable_async_checkpointing=True,
        )
        # Orbax warns "Given directory is read only" for every reader (evaluation, export).
        absl_log = logging.getLogger("absl")
        level = absl_log.level
        absl_log.setLevel(logging.ERROR if read_only else level)
        try:
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=options,
                item_handlers={
                    "state": ocp.StandardCheckpointHandler(),
                    "input": ocp.JsonCheckpointHandler(),
                    "meta": ocp.JsonCheckpointHandler(),
                },
            )
        finally:
            absl_log.setLevel(level)

    def latest_step(self) -> int | None:
        """The newest complete step, or None."""
        _see_other_writers(self.directory)
        self._manager.reload()
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """All complete steps, oldest first."""
        _see_other_writers(self.directory)
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def step_path(self, step: int) -> str:
        """The directory of one step's checkpoint."""
        return fs.join(self.directory, str(step))

    def save(self, step: int, state: Any, input_state: Any = None) -> None:
        """Starts writing a checkpoint of ``state`` at ``step`` (finished in the background).

        ``input_state`` is this process's input position (JSON data or None).
        Every process of the job must call ``save`` for the same steps: the
        positions of all processes are gathered into the checkpoint. Raises
        ``CheckpointWriteError`` when this or the previous background write failed.
        """
        states = gather_input_states(input_state)
        meta = {"step": int(step), "time": time.time(), "jax_version": jax.__version__,
                "num_processes": len(states)}
        self.wait()  # the previous background write: its failure names its own step
        self._pending = int(step)
        try:
            self._manager.save(
                int(step),
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state),
                    input=ocp.args.JsonSave({"iterators": states}),
                    meta=ocp.args.JsonSave(meta),
                ),
                force=True,
            )
        except Exception as error:  # orbax re-raises a failed background write at the next save too
            if not _is_write_failure(error):
                raise
            raise self._write_error(error) from None

    def _write_error(self, error: BaseException) -> CheckpointWriteError:
        """A short message naming the step being written and the newest intact one."""
        step = self._pending
        path = self.step_path(step) if step is not None else self.directory
        no_space = getattr(error, "errno", None) == errno.ENOSPC or "no space left" in str(error).lower()
        what = "no space left on device" if no_space else f"{type(error).__name__}: {str(error).splitlines()[0]}"
        try:
            latest = self.latest_step()
        except Exception:  # noqa: BLE001 - the message must not fail on a broken directory
            latest = None
        kept = (f"the latest complete checkpoint, {self.step_path(latest)}, is intact" if latest is not None
                else "no earlier checkpoint exists")
        fix = "Free disk space (or lower keep_checkpoint_max) and rerun to resume." if no_space else "Rerun to resume."
        return CheckpointWriteError(f"Could not save checkpoint {path}: {what}; {kept}. {fix}")

    # ------------------------------------------------------------------ reading
    def _corrupt(self, step: int, error: BaseException) -> CheckpointCorruptError:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return CheckpointCorruptError(
            f"Checkpoint {self.step_path(step)} is incomplete or damaged ({type(error).__name__}: {first[:300]}). "
            f"Delete or move that directory to use the previous checkpoint.")

    def verify(self, step: int) -> None:
        """Reads all of ``step`` (state onto one device, input and meta JSON); raises ``CheckpointCorruptError``."""
        try:
            self._state_metadata(step)
            self._manager.restore(step, args=ocp.args.Composite(input=ocp.args.JsonRestore(),
                                                                meta=ocp.args.JsonRestore()))
            self.restore_arrays(step)
        except CheckpointCorruptError:
            raise
        except _READ_ERRORS as error:
            raise self._corrupt(step, error) from error

    def _readable(self, step: int) -> bool:
        """The cheap part of ``verify`` (metadata and JSON items, no array data)."""
        try:
            self._state_metadata(step)
            self._manager.restore(step, args=ocp.args.Composite(input=ocp.args.JsonRestore(),
                                                                meta=ocp.args.JsonRestore()))
        except (CheckpointCorruptError, *_READ_ERRORS) as error:
            damaged = error if isinstance(error, CheckpointCorruptError) else self._corrupt(step, error)
            log.warning("Skipping: %s", damaged)
            return False
        return True

    def usable_latest_step(self, quarantine: bool = False) -> int | None:
        """The newest step whose metadata and JSON items read back, warning about each newer damaged one.

        ``quarantine`` (the trainer) moves damaged steps to ``model_dir/corrupt_checkpoints/``
        so that training can write those steps again. Raises ``CheckpointCorruptError`` when
        checkpoints exist but none is readable.
        """
        steps = self.all_steps()
        for step in reversed(steps):
            if self._readable(step):
                return step
            if quarantine:
                self.quarantine(step)
        if steps:
            where = (f"they were moved to {fs.join(fs.dirname(self.directory), CORRUPT_SUBDIR)}; rerun "
                     "to train from scratch" if quarantine else "delete or move them to start from scratch")
            raise CheckpointCorruptError(
                f"Every checkpoint in {self.directory} (steps {steps}) is incomplete or damaged; {where}.")
        return None

    def quarantine(self, step: int) -> None:
        """Moves a damaged step out of the checkpoint directory (process 0; every process must call it)."""
        if jax.process_index() == 0:
            target = fs.join(fs.dirname(self.directory), CORRUPT_SUBDIR, f"{step}-{int(time.time())}")
            fs.makedirs(fs.dirname(target))
            fs.move(self.step_path(step), target)  # on buckets a copy and a delete, object by object
            log.warning("Moved the damaged checkpoint %s to %s.", self.step_path(step), target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"quarantine checkpoint {step}")
        self._manager.reload()

    def restore(self, step: int, abstract_state: Any) -> Any:
        """Reads the training state of ``step`` (its input position: ``restore_input``).

        ``abstract_state`` gives shapes, dtypes and shardings. Raises
        ``CheckpointMismatchError`` when the saved state has other variables or
        optimizer slots than ``abstract_state``, ``CheckpointCorruptError`` when
        the checkpoint's files are damaged.
        """
        if step not in self.all_steps():
            raise CheckpointNotFoundError(
                f"No complete checkpoint for step {step} in {self.directory}; "
                f"available steps: {self.all_steps()}."
            )
        self._check_structure(step, abstract_state)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)),
            )
        except _READ_ERRORS as error:
            self.verify(step)  # damaged files raise CheckpointCorruptError here
            if isinstance(error, ValueError) and "tree structures do not match" in str(error):
                raise CheckpointMismatchError(_structure_message(self.step_path(step), step, error)) from None
            raise
        return restored["state"]

    def restore_input(self, step: int) -> Any:
        """Reads this process's input iterator state of ``step``.

        None when the input had no state, or when the checkpoint was written by
        another number of processes (logged as a warning: the input restarts).
        """
        return self._own_input_state(step, self._read_input(step))

    def restore_input_states(self, step: int) -> list[Any]:
        """The input iterator states of all processes that wrote ``step``, by process index."""
        return _input_states(self._read_input(step))

    def _read_input(self, step: int) -> Any:
        try:
            return self._manager.restore(step, args=ocp.args.Composite(input=ocp.args.JsonRestore()))["input"]
        except _READ_ERRORS as error:
            raise self._corrupt(step, error) from error

    def _own_input_state(self, step: int, saved: Any) -> Any:
        states = _input_states(saved)
        count, index = jax.process_count(), jax.process_index()
        if len(states) == count:
            return states[index]
        if step in self._warned_steps:
            return None
        self._warned_steps.add(step)
        log.warning(
            "Checkpoint %s was written by %d processes, this job has %d: their input positions do not map "
            "to this job's input shards, so the input starts from its beginning (data read before the "
            "checkpoint may be read again; parameters and optimizer state resume as saved). "
            "Run with %d processes to resume the input exactly.",
            self.step_path(step), len(states), count, len(states))
        return None

    def _state_metadata(self, step: int) -> Any:
        """The orbax metadata tree of the state item; ``CheckpointCorruptError`` when missing or empty."""
        try:
            metadata = self._manager.item_metadata(step)["state"]
        except _READ_ERRORS as error:
            raise self._corrupt(step, error) from error
        tree = getattr(metadata, "tree", metadata)
        if not _leaf_specs(tree):  # a training state always has arrays (at least the step)
            raise self._corrupt(step, FileNotFoundError("the state's array metadata (_METADATA) is missing"))
        return tree

    def _check_structure(self, step: int, abstract_state: Any) -> None:
        saved = _leaf_specs(self._state_metadata(step))
        wanted = _leaf_specs(abstract_state)
        differences = _differences(saved, wanted)
        if any(differences.values()):
            raise CheckpointMismatchError(_mismatch_message(self.step_path(step), step, differences))

    def restore_arrays(self, step: int) -> Any:
        """Reads the state of ``step`` onto this process's first device, whatever topology wrote it.

        For evaluation, prediction, export and warm start: a checkpoint written by
        several processes or devices is read back by one (orbax refuses a restore
        without a target when the device set differs). Raises ``CheckpointCorruptError``
        when its files are damaged.
        """
        tree = self._state_metadata(step)
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=device), tree)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
        except _READ_ERRORS as error:
            raise self._corrupt(step, error) from error
        return restored["state"]

    def read_latest_arrays(self, restore: Callable[[int], Any] | None = None) -> tuple[int, Any] | None:
        """``(step, state)`` of the newest checkpoint that reads back, falling back past damaged ones; a reader's view.

        ``restore`` (default ``restore_arrays``) reads one step; the Estimator passes its cache.
        """
        restore = restore or self.restore_arrays
        step = self.usable_latest_step()
        while step is not None:
            try:
                return step, restore(step)
            except CheckpointCorruptError as error:
                older = [s for s in self.all_steps() if s < step]
                log.warning("%s Falling back to %s.", error, self.step_path(older[-1]) if older else "nothing")
                step = older[-1] if older else None
        return None

    def wait(self) -> None:
        """Blocks until background writes are complete; ``CheckpointWriteError`` when one failed."""
        try:
            self._manager.wait_until_finished()
        except Exception as error:
            if not _is_write_failure(error):
                raise
            raise self._write_error(error) from None

    def close(self) -> None:
        """Finishes pending writes and releases the manager."""
        self._manager.close()


def _is_write_failure(error: BaseException) -> bool:
    """An OS-level write failure, also as tensorstore reports it (a ValueError with the OS error's text)."""
    text = str(error)
    return isinstance(error, OSError) or any(s in text for s in ("RESOURCE_EXHAUSTED", "os_error_code", "No space left"))


def gather_input_states(input_state: Any) -> list[Any]:
    """The input states of all processes, by process index; a collective every process must call.

    Each process encodes its state as JSON bytes, all-gathered by
    ``distribute.allgather_bytes``.
    """
    try:
        encoded = json.dumps(input_state).encode("utf-8")
    except (TypeError, ValueError) as error:
        raise InputStateError(
            f"The input iterator's state() returned {type(input_state).__name__} that is not JSON data "
            f"({error}); make state() return dicts/lists of str, int, float, bool or None."
        ) from error
    return [json.loads(part) for part in distribute.allgather_bytes(encoded)]


def _input_states(saved: Any) -> list[Any]:
    """The per-process input states of a checkpoint's ``input`` item (both layouts)."""
    saved = saved or {}
    if "iterators" in saved:
        return list(saved["iterators"])
    return [saved.get("iterator")]  # single-process layout before per-process states


def _path_name(path: Sequence[Any]) -> str:
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def _leaf_specs(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{"opt_state/0/mu/dnn/kernel": (shape, dtype)}`` of every array in a state or its orbax metadata.

    Orbax stores named tuples as dicts and tuples as lists, and empty optimizer
    states as None; paths are compared by their key names, which agree.
    """
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {_path_name(path): (tuple(leaf.shape), str(np.dtype(leaf.dtype)))
            for path, leaf in leaves if hasattr(leaf, "shape")}


def _differences(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, list[str]]:
    """Paths only in the checkpoint, only in the current state, and with another shape or dtype.

    Variables come before optimizer slots, which mostly repeat them.
    """
    def order(keys):
        return sorted(keys, key=lambda k: (k.startswith("opt_state/"), k))

    return {
        "in the checkpoint only": order(saved.keys() - wanted.keys()),
        "not in the checkpoint": order(wanted.keys() - saved.keys()),
        "other shape/dtype": [f"{k} {saved[k]} in the checkpoint, {wanted[k]} now"
                              for k in order(saved.keys() & wanted.keys()) if saved[k] != wanted[k]],
    }


def _mismatch_message(path: str, step: int, differences: dict[str, list[str]]) -> str:
    model_dir = fs.dirname(fs.dirname(path))
    shown = "; ".join(f"{kind}: {', '.join(items[:4])}" + (f" and {len(items) - 4} more" if len(items) > 4 else "")
                      for kind, items in differences.items() if items)
    paths = [p.split(" ")[0] for items in differences.values() for p in items]
    if all(p.startswith("opt_state/") for p in paths):
        what = ("the optimizer state in the checkpoint does not match the current optimizer "
                "(was the optimizer changed since this checkpoint was written?)")
        fix = (f"To resume this model_dir, restore the original optimizer. To train with the new optimizer, "
               f"start a new model_dir with warm_start_from={model_dir!r} (it copies the weights, not the "
               "optimizer state).")
    else:
        what = "the model's variables in the checkpoint do not match the current model_fn (was the model changed?)"
        fix = (f"To resume this model_dir, restore the original model. To start from its weights, use a new "
               f"model_dir with warm_start_from={model_dir!r} (a WarmStartSettings can pick the variables "
               "that still fit).")
    return f"Cannot resume from checkpoint {path} (step {step}): {what}. Differences: {shown}. {fix}"


def _structure_message(path: str, step: int, error: BaseException) -> str:
    """A CheckpointMismatchError message for orbax's raw "tree structures do not match"."""
    detail = " ".join(line.strip() for line in str(error).splitlines()[1:6] if line.strip())
    model_dir = fs.dirname(fs.dirname(path))
    if "opt_state" in str(error):
        what = ("the optimizer state in the checkpoint has another structure than the current optimizer's "
                "(was the optimizer changed since this checkpoint was written, e.g. adam -> adamw?)")
        fix = (f"To resume this model_dir, restore the original optimizer. To train with the new optimizer, "
               f"start a new model_dir with warm_start_from={model_dir!r} (it copies the weights, not the "
               "optimizer state).")
    else:
        what = "the training state in the checkpoint has another structure than the current one"
        fix = f"Restore the original model and optimizer, or warm-start a new model_dir from {model_dir!r}."
    return f"Cannot resume from checkpoint {path} (step {step}): {what}. Orbax: {detail}. {fix}"
