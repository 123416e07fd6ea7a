"""Background input: pulls batches, preprocesses them on the host, stacks groups, puts them on devices.

Each delivered item carries the input iterator's state *after* its batches, so
a checkpoint records exactly what the step consumed, not what the thread read ahead.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import numpy as np

from estimator import distribute

_DONE = object()


class Group(NamedTuple):
    """``size`` consecutive batches; stacked on a new leading axis when ``stacked``."""

    features: Any
    labels: Any
    size: int
    stacked: bool
    examples: int
    input_state: Any


def split_element(element: Any) -> tuple[Any, Any]:
    """An input element is ``features`` or ``(features, labels)``."""
    if isinstance(element, tuple | list) and len(element) == 2:
        return element[0], element[1]
    return element, None


def batch_size_of(features: Any) -> int:
    """Leading dimension of the first array in ``features``."""
    leaves = jax.tree.leaves(features)
    return int(np.shape(leaves[0])[0]) if leaves and np.ndim(leaves[0]) else 1


def _stackable(batches: list) -> bool:
    """Whether all batches have the structure and leaf shapes of the first (one flatten each)."""
    first, treedef = jax.tree.flatten(batches[0])
    shapes = [np.shape(x) for x in first]
    for batch in batches[1:]:
        leaves, other = jax.tree.flatten(batch)
        if other != treedef or any(np.shape(x) != s for x, s in zip(leaves, shapes, strict=True)):
            return False
    return True


def _stack(batches: list) -> tuple[Any, Any]:
    """(features, labels) of equally shaped batches stacked on a new leading axis."""
    features = jax.tree.map(lambda *xs: np.stack(xs), *[b[0] for b in batches])
    labels = None if batches[0][1] is None else jax.tree.map(lambda *xs: np.stack(xs), *[b[1] for b in batches])
    return features, labels


class Prefetcher:
    """Iterates ``Group``s of up to ``group_size`` batches from ``iterator`` in a background thread.

    Args:
      iterator: yields ``features`` or ``(features, labels)`` numpy batches.
      mesh: the device mesh batches are laid out over.
      preprocess: host-side feature transform applied to every batch.
      preprocess_labels: host-side label transform applied to every batch with labels.
      check: ``check(tree, what)`` raises if a group's ``"feature"`` or ``"label"`` arrays
        cannot go to the devices; run once per group (after stacking), not per batch.
      group_size: batches fused per device call (steps_per_loop).
      max_batches: stop after this many batches (None: until exhausted).
      depth: groups staged ahead.
    """

    def __init__(
        self,
        iterator: Iterator,
        mesh,
        preprocess: Callable[[Any], Any],
        preprocess_labels: Callable[[Any], Any],
        group_size: int = 1,
        max_batches: int | None = None,
        depth: int = 2,
        check: Callable[[Any, str], None] | None = None,
    ):
        self._iterator = iterator
        self._check = check
        self._mesh = mesh
        self._preprocess = preprocess
        self._preprocess_labels = preprocess_labels
        self._group_size = group_size
        self._max_batches = max_batches
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="estimator-prefetch", daemon=True)
        self._thread.start()

    def _input_state(self) -> Any:
        state_fn = getattr(self._iterator, "state", None)
        return state_fn() if callable(state_fn) else None

    def _next_batch(self) -> tuple[Any, Any] | None:
        try:
            element = next(self._iterator)
        except StopIteration:
            return None
        features, labels = split_element(element)
        return self._preprocess(features), None if labels is None else self._preprocess_labels(labels)

    def _emit(self, batches: list, stacked: bool, input_state: Any) -> None:
        features, labels = batches[0] if not stacked else _stack(batches)
        if self._check is not None:
            self._check(features, "feature")
            if labels is not None:
                self._check(labels, "label")
        examples = len(batches) * batch_size_of(batches[0][0]) if stacked else batch_size_of(features)
        lead = 1 if stacked else 0
        features, labels = distribute.put_batch((features, labels), self._mesh, lead)  # one transfer call
        group = Group(
            features,
            labels,
            len(batches),
            stacked,
            examples,
            input_state,
        )
        self._put(group)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            produced = 0
            while not self._stop.is_set():
                remaining = None if self._max_batches is None else self._max_batches - produced
                if remaining is not None and remaining <= 0:
                    break
                want = self._group_size if remaining is None or remaining >= self._group_size else 1
                batches, states = [], []
                for _ in range(want):
                    batch = self._next_batch()
                    if batch is None:
                        break
                    batches.append(batch)
                    states.append(self._input_state())
                if len(batches) == want and want > 1 and _stackable(batches):
                    self._emit(batches, True, states[-1])
                else:
                    for batch, state in zip(batches, states, strict=True):
                        self._emit([batch], False, state)
                produced += len(batches)
                if len(batches) < want:
                    break
            self._put(_DONE)
        except BaseException as error:  # noqa: BLE001 - re-raised in the consumer thread
            self._put(error)

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> Group:
        item = self._queue.get()
        if item is _DONE:
            self._queue.put(_DONE)
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stops the thread; batches read ahead are dropped."""
        self._stop.set()
        self._thread.join(timeout=5)
