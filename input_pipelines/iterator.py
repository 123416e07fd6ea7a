"""`DatasetIterator`: what `iter(dataset)` returns, with a checkpointable state."""

from __future__ import annotations

from typing import Any

from input_pipelines import _structure as st
from input_pipelines._base import _Context, _Stats
from input_pipelines._cursor import RowCursor
from input_pipelines._seeds import Seeds
from input_pipelines.dataset import Dataset
from input_pipelines.errors import StateError

STATE_VERSION = 1


class DatasetIterator:
    """Iterator over a dataset's elements, with `state()` / `restore(state)`.

    The state is a small JSON-serializable dict: positions in files (file index and byte
    offset for CSV; row group and batch for Parquet; row for .npy), element counters, seeds,
    shuffle step numbers and epoch numbers, never buffered data, so its size does not depend on
    the dataset. `restore(state)` on a fresh `iter(dataset)` of the same pipeline continues with
    exactly the elements the original iterator would have produced next. Format::

        {"version": 1, "pipeline": "<structure hash>", "skipped_rows": 0, "seed": 8124...,
         "position": <nested dict, one level per stage, e.g.
            {"up": {"epoch": 2, "seen": true, "up": {"seed": 1, "step": 7, "carry": true,
             "emitted": 0, "from": {"inputs": ..., "cursor": 1, "slots": [
                {"path": "train-00003.csv", "state": {"file": 0, "offset": 4194301}}, ...]}}},
             "off": 212}>}

    `seed` is the root seed that stages given `seed=None` derive their seeds from (None when no
    stage needed one): restoring it makes every later epoch's file order and shuffle the same
    as in the saved run. Stages that buffer restore by replaying a bounded amount of input from
    a recorded position: `batch` re-reads one upstream chunk, `shuffle` at most two windows.
    """

    def __init__(self, dataset: Dataset) -> None:
        self._dataset = dataset
        self._fingerprint = dataset.fingerprint  # the state of every batch names it
        self._stats = _Stats()
        self._build(Seeds())
        self._done = False

    def _build(self, seeds: Seeds) -> None:
        self._seeds = seeds
        self._it = self._dataset._iterator(_Context(self._stats, seeds))
        self._cursor = RowCursor(self._it) if self._dataset._depth == 0 else None

    def __iter__(self) -> DatasetIterator:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        try:
            if self._cursor is None:
                return self._it.next()
            parts = self._cursor.take(1)
        except StopIteration:
            self._done = True
            raise
        if not parts:
            self._done = True
            raise StopIteration
        return st.row(parts[0], 0)

    @property
    def skipped_rows(self) -> int:
        """Malformed rows skipped so far by readers with `on_error="skip"` (includes read-ahead)."""
        return self._stats.skipped_rows

    def state(self) -> dict[str, Any]:
        """The position after the last element returned, as a small JSON-able dict."""
        position = self._it.state() if self._cursor is None else self._cursor.state()
        return {
            "version": STATE_VERSION,
            "pipeline": self._fingerprint,
            "skipped_rows": self._stats.skipped_rows,
            "seed": self._seeds.drawn,
            "position": position,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from `state` (from `state()` of an iterator over the same pipeline)."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise StateError(
                f"unsupported iterator state (expected a dict with version {STATE_VERSION}, got "
                f"{type(state).__name__} {str(state)[:80]!r})"
            )
        if state.get("pipeline") != self._fingerprint:
            raise StateError(
                "the saved iterator state belongs to a different input pipeline (structure "
                f"fingerprint {state.get('pipeline')} != {self._fingerprint}); rebuild the "
                "same pipeline as when the state was saved, or start the input from scratch"
            )
        try:
            seed = state.get("seed")
            if seed is not None and seed != self._seeds.drawn:
                self._it.close()
                self._build(Seeds(int(seed)))
            if self._cursor is None:
                self._it.restore(state["position"])
            else:
                self._cursor.restore(state["position"])
        except (KeyError, TypeError, IndexError) as e:
            raise StateError(f"corrupt iterator state: {e!r}") from e
        self._stats.skipped_rows = int(state.get("skipped_rows", 0))
        self._done = False

    def close(self) -> None:
        """Stop background threads and close files."""
        self._it.close()

    def __enter__(self) -> DatasetIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass
