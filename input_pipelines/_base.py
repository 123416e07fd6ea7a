"""The stage protocol every `Dataset` stage implements, and what stages share while they run.

A stage is a `Dataset` subclass whose `_iterator(ctx)` returns an `_Iterator`; `_Context`
carries the pipeline's seeds, stats and epoch path to it. Kept apart from `dataset.py` so that
helpers (`_cursor`, `_background`) and readers import the protocol without `Dataset`.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from input_pipelines import _structure as st
from input_pipelines._seeds import Seeds


class _Stats:
    """Counters shared by all stages of one running pipeline (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.skipped_rows = 0

    def add_skipped(self, n: int) -> None:
        with self._lock:
            self.skipped_rows += n


@dataclasses.dataclass(frozen=True)
class _Context:
    """What a stage needs to build its iterator: stats, the pipeline's seeds, the epoch path
    (stages shuffle epoch `e` with their seed and `e`) and whether the iterator is one of
    several run by parallel threads (then a reader should not start threads of its own)."""

    stats: _Stats
    seeds: Seeds
    epochs: tuple[int, ...] = ()
    in_parallel: bool = False

    def with_epoch(self, epoch: int) -> _Context:
        return dataclasses.replace(self, epochs=self.epochs + (epoch,))


class _Iterator:
    """Internal iterator protocol of a stage.

    `next()` returns the next item or raises StopIteration. `state()` is called only between
    items and must describe that position; `restore(state)` on a fresh iterator must then
    reproduce exactly the same following items (same chunk boundaries).
    """

    def next(self) -> Any:
        raise NotImplementedError

    def next_rows(self) -> Any:
        """The next item (a chunk of rows) as a `_structure.Span`, possibly with an index: the
        same rows and state as `next()`. A stage that would gather rows (shuffle) returns its
        source and index instead, so that a consumer cutting the rows up (batch) gathers each
        piece once instead of gathering all and copying the pieces.
        """
        return st.whole_span(self.next())

    def pull_spans(self, min_rows: int) -> list[Any]:
        """Whole next items (chunks of rows) until at least `min_rows` rows, fewer only at the
        end, as `_structure.Span`s: the same rows and state as calling `next()` for each.

        Stages that cut a row stream into items cheaply (interleave's small blocks) override it
        so that a consumer of many rows at once (shuffle) gets no Python object per item.
        """
        spans, rows = [], 0
        while rows < min_rows:
            try:
                item = self.next()
            except StopIteration:
                break
            span = st.whole_span(item)
            if span.stop:
                spans.append(span)
                rows += span.stop
        return spans

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    def restore(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release threads and files (idempotent)."""
