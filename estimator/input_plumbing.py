"""From an ``input_fn`` to device-ready batches: calling it, checking its result, the ``Prefetcher``.

Shared by ``train_loop``, ``eval_loop`` and ``Estimator.predict``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from estimator import distribute
from estimator._prefetch import Prefetcher

if TYPE_CHECKING:
    from estimator.estimator import Estimator


def accepted_args(fn: Callable) -> set[str]:
    """The argument names ``fn`` takes (all the Estimator passes when it takes ``**kwargs``)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return {"params", "mode", "config", "input_context", "labels"}
    return set(params)


def input_iterator(est: Estimator, input_fn: Callable, mode: str) -> Iterator:
    """An iterator over the ``(features, labels)`` batches ``input_fn`` returns (one batch: a one-item one)."""
    from estimator.estimator import EstimatorError  # estimator.estimator imports this module

    args = accepted_args(input_fn)
    available = {
        "params": est.params,
        "mode": mode,
        "config": est.config,
        "input_context": distribute.InputContext.current(),
    }
    result = input_fn(**{k: v for k, v in available.items() if k in args})
    if isinstance(result, Mapping) or (
        isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], Mapping)
    ):
        return iter([result])
    if not isinstance(result, Iterable):
        raise EstimatorError(
            f"input_fn returned {type(result).__name__}; it must return an iterable of (features, labels) "
            "batches (e.g. an input_pipelines Dataset), or one (features, labels) batch."
        )
    return iter(result)


def prefetcher(est: Estimator, iterator: Iterator, mode: str, group_size: int = 1,
               max_batches: int | None = None, mesh: Any = None) -> Prefetcher:
    """A ``Prefetcher`` of ``iterator``'s preprocessed batches onto ``mesh`` (the training mesh if None)."""
    def check(tree: Any, what: str) -> None:
        _device_ready(tree, mode, what)

    return Prefetcher(iterator, est._mesh if mesh is None else mesh, est.preprocessing.features,
                      est.preprocessing.labels, group_size, max_batches, est.config.prefetch_batches, check)


def _device_ready(tree: Any, mode: str, what: str) -> Any:
    """``tree`` unchanged; an ``EstimatorError`` naming the mode and the key of any string/object array.

    Such arrays cannot be device arrays (JAX's own error names neither).
    """
    from estimator.estimator import EstimatorError  # estimator.estimator imports this module

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    bad = [(jax.tree_util.keystr(path) or "(the whole batch)", np.asarray(leaf).dtype) for path, leaf in leaves
           if np.asarray(leaf).dtype.kind in "USOMm"]
    if bad:
        names = ", ".join(f"{name} ({dtype})" for name, dtype in bad)
        raise EstimatorError(
            f"{mode} input: {what}(s) {names} hold strings or objects, which cannot be sent to the devices. "
            "Turn them into numbers on the host: a categorical feature column (vocabulary list or hash bucket) "
            "in a canned estimator, a map in the input pipeline, or drop them from the features.")
    return tree
