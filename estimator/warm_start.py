"""Warm starting: initialise fresh parameters from a checkpoint or from given arrays, by name."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from estimator import nn

log = logging.getLogger("estimator")


class WarmStartError(ValueError):
    """A warm-start request names a variable that is missing or has another shape."""


class WarmStartSettings(NamedTuple):
    """Which variables to take from which checkpoint (tf.estimator.WarmStartSettings).

    Attributes:
      ckpt_to_initialize_from: a model_dir, its ``checkpoints`` folder, or one step's folder.
      vars_to_warm_start: a regex, or a list of regexes, over variable names.
      var_name_to_prev_var_name: new name -> name in the checkpoint, for renamed variables.
    """

    ckpt_to_initialize_from: str
    vars_to_warm_start: str | list[str] = ".*"
    var_name_to_prev_var_name: Mapping[str, str] | None = None


def _select(names: list[str], patterns: str | list[str]) -> list[str]:
    if isinstance(patterns, str):
        regex = re.compile(patterns)
        chosen = [n for n in names if regex.fullmatch(n) or regex.match(n)]
        if not chosen:
            raise WarmStartError(f"vars_to_warm_start={patterns!r} matches no variable of the model; variables: {names}.")
        return chosen
    chosen = []
    for pattern in patterns:
        regex = re.compile(pattern)
        hits = [n for n in names if regex.fullmatch(n)]
        if not hits:
            raise WarmStartError(f"vars_to_warm_start entry {pattern!r} matches no variable of the model; variables: {names}.")
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def _checkpoint_variables(path: str) -> tuple[dict[str, np.ndarray], str]:
    from estimator import nn
    from estimator.checkpoint import CheckpointStore, checkpoint_dir, parse_checkpoint_path

    root, step = parse_checkpoint_path(path)
    store = CheckpointStore(root, read_only=True)
    step = store.latest_step() if step is None else step
    if step is None:
        raise WarmStartError(f"warm_start_from={path!r}: no complete checkpoint under {checkpoint_dir(root)}.")
    state = store.restore_arrays(step)
    flat = {**nn.flatten_names(state.get("model_state") or {}), **nn.flatten_names(state["params"])}
    return {k: np.asarray(v) for k, v in flat.items()}, store.step_path(step)


def warm_start_values(source: Any, variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Values for the model ``variables`` (name -> array) that ``source`` asks to warm start.

    ``source`` is a checkpoint path, a ``WarmStartSettings``, or a mapping
    name -> array. Raises WarmStartError naming both sides on a missing name
    or a shape mismatch.
    """
    names = sorted(variables)
    if isinstance(source, Mapping):
        pairs = {name: (name, np.asarray(value)) for name, value in source.items()}
        missing = [n for n in pairs if n not in variables]
        if missing:
            raise WarmStartError(
                f"warm_start_from names {missing}, which the model does not have; model variables: {names}."
            )
        where = "warm_start_from mapping"
    else:
        settings = source if isinstance(source, WarmStartSettings) else WarmStartSettings(os.fspath(source))
        saved, where = _checkpoint_variables(settings.ckpt_to_initialize_from)
        renames = dict(settings.var_name_to_prev_var_name or {})
        pairs = {}
        for name in _select(names, settings.vars_to_warm_start):
            prev = renames.get(name, name)
            if prev not in saved:
                raise WarmStartError(
                    f"warm start: model variable {name!r} maps to {prev!r}, which checkpoint {where} lacks; "
                    f"it has {sorted(saved)}."
                )
            pairs[name] = (prev, saved[prev])
    values = {}
    for name, (prev, value) in pairs.items():
        want = tuple(np.shape(variables[name]))
        if tuple(value.shape) != want:
            raise WarmStartError(
                f"warm start: model variable {name!r} has shape {want} but {prev!r} in {where} has shape {tuple(value.shape)}."
            )
        values[name] = value.astype(np.asarray(variables[name]).dtype if hasattr(variables[name], "dtype") else value.dtype)
    return values


def apply_warm_start(source: Any, params: Any, model_state: Any) -> tuple[Any, Any]:
    """``(params, model_state)`` with the variables ``source`` (``warm_start_from``) names replaced by its values."""
    flat_params, flat_state = nn.flatten_names(params), nn.flatten_names(model_state)
    values = warm_start_values(source, {**flat_state, **flat_params})
    log.info("Warm-starting %d variables: %s", len(values), sorted(values))
    for name, value in values.items():
        target = flat_params if name in flat_params else flat_state
        target[name] = jnp.asarray(value, dtype=target[name].dtype)
    return nn.unflatten_names(flat_params), nn.unflatten_names(flat_state)
