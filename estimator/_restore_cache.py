"""The last restored checkpoint of an Estimator, kept so that reading it again costs no restore.

A committed checkpoint never changes, so ``predict``, export and
``get_variable_value`` on the step they read last reuse its arrays instead of
restoring them again (each restore reads every array from disk); ``evaluate``
reuses a kept checkpoint but does not keep its own. Only one checkpoint's
parameters, model state and step are kept (bounded memory); reading another step
replaces it, and ``train`` drops it. A step
directory that was deleted and written again (a model_dir retrained from
scratch) has another inode or mtime (on a bucket: another generation or ETag of its
metadata object) and is restored anew.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from estimator import nn
from estimator.checkpoint import CheckpointStore
from input_pipelines import fs

# Orbax writes this object into every step it saves: on a bucket, where a step is only a
# prefix, its generation (GCS) or ETag (S3) names the write.
_WRITTEN_EACH_SAVE = "_CHECKPOINT_METADATA"


def _identity(store: CheckpointStore, step: int) -> tuple[Any, ...]:
    """What names one written checkpoint: locally the step directory's path, inode and mtime;
    on a bucket its metadata object's URL and generation / ETag."""
    path = store.step_path(step)
    try:
        return fs.identity(fs.join(path, _WRITTEN_EACH_SAVE) if fs.is_url(path) else path)
    except OSError:  # gone: restore_arrays raises the error that says so
        return (path, None)


def _servable_part(state: Mapping[str, Any]) -> dict[str, Any]:
    """What predict, evaluate, export and the variables read: not the optimizer state (less memory kept)."""
    return {key: state[key] for key in ("params", "model_state", "step") if key in state}


class RestoreCache:
    """The state arrays (and flat variables) of the checkpoint restored last."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._state: Any = None
        self._variables: dict[str, np.ndarray] | None = None

    def arrays(self, store: CheckpointStore, step: int, keep: bool = True) -> Any:
        """The params, model state and step of ``step``, restored only when it is not the kept checkpoint.

        ``keep``: a restored checkpoint replaces the kept one (else it is only returned).
        """
        key = _identity(store, step)
        if key == self._key and key[1] is not None:
            return self._state
        if not keep:
            return _servable_part(store.restore_arrays(step))
        self.clear()  # first: the old state is freed before the new one is read
        self._state = _servable_part(store.restore_arrays(step))
        self._key = key
        return self._state

    def latest(self, store: CheckpointStore) -> tuple[int, Any] | None:
        """``(step, state)`` when the newest step of ``store`` is the kept checkpoint, else None.

        Lists the steps only: the kept one was read back in full when it was kept.
        """
        steps = store.all_steps()
        if not steps or self._key is None or _identity(store, steps[-1]) != self._key:
            return None
        return steps[-1], self._state

    def variables(self, state: Any) -> dict[str, np.ndarray]:
        """Every variable of ``state`` by ``get_variable_value`` name (read-only numpy), computed once per state."""
        if self._variables is None or state is not self._state:
            flat = {**nn.flatten_names(state.get("model_state") or {}), **nn.flatten_names(state["params"])}
            flat["global_step"] = state["step"]
            variables = {k: np.asarray(v) for k, v in flat.items()}
            if state is not self._state:
                return variables
            self._variables = variables
        return self._variables

    def clear(self) -> None:
        """Forgets the kept checkpoint (its memory is freed once no caller holds it)."""
        self._key, self._state, self._variables = None, None, None
