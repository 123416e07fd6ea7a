"""`interleave`: read several inputs (files) at once, in a deterministic round-robin order.

`ds.interleave(reader, cycle_length, num_parallel, block_length)` maps each element of `ds` (a
file name) to a dataset `reader(name)` and cycles over `cycle_length` of them, taking
`block_length` rows from each in turn (None: one whole chunk, e.g. ~4 MiB of CSV); an exhausted
reader is replaced by the next input in its slot. Small blocks matter for shuffling: a shuffle
buffer of 10,000 rows after the interleave can only mix files whose rows arrive within those
10,000 rows. With `num_parallel` > 0 every open reader parses its next chunk ahead in a thread
pool, so files are read and parsed in parallel while the output order stays fixed.

A consumer of many rows at once (`shuffle`, a window of 10,000 rows) takes them with
`pull_spans`: the same blocks as from `next()`, as (chunk, rows) spans joined with one
concatenation per column, so small blocks cost no Python object each.

State: the input position, the cycle cursor and, per slot, the file name, that reader's own
state before its current chunk (e.g. byte offset and line) and the rows already taken from that
chunk, so restoring opens the same files at the same offsets.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from input_pipelines import _structure as st
from input_pipelines._base import _Context, _Iterator
from input_pipelines._cursor import RowCursor
from input_pipelines.dataset import Dataset

_END = object()


class Interleave(Dataset):
    """Chunks of `reader(input)` datasets for `cycle_length` inputs at a time, round robin."""

    def __init__(
        self,
        parent: Dataset,
        reader: Callable[[str], Dataset],
        cycle_length: int,
        num_parallel: int | None,
        block_length: int | None = None,
    ) -> None:
        if parent._depth != 0:
            raise ValueError("interleave() reads its inputs one by one; call it before batch()")
        if int(cycle_length) < 1:
            raise ValueError(f"cycle_length must be >= 1, got {cycle_length}")
        if block_length is not None and int(block_length) < 1:
            raise ValueError(f"block_length must be >= 1 or None, got {block_length}")
        name = getattr(reader, "__qualname__", type(reader).__name__)
        block = "" if block_length is None else f",{int(block_length)}"
        super().__init__(f"{parent._signature}/interleave({name},{cycle_length}{block})", 0)
        self._parent, self._reader, self._cycle = parent, reader, int(cycle_length)
        self._block = None if block_length is None else int(block_length)
        if num_parallel is None:
            num_parallel = min(self._cycle, os.cpu_count() or 1)
        self._num_parallel = int(num_parallel)

    def _iterator(self, ctx: _Context) -> _Iterator:
        return _InterleaveIterator(self, ctx)


def _step(it: _Iterator) -> Any:
    try:
        return it.next()
    except StopIteration:
        return _END


class _ReadAhead(_Iterator):
    """A reader's iterator whose next chunk is parsed ahead in a thread pool (when given one).

    `state()` is the position before the chunk `next()` returns next."""

    def __init__(self, it: _Iterator, pool: ThreadPoolExecutor | None) -> None:
        self._it, self._pool = it, pool
        self._pre: Any = None
        self._future: Future | None = None
        self._schedule()

    def _schedule(self) -> None:
        self._pre = self._it.state()
        self._future = None if self._pool is None else self._pool.submit(_step, self._it)

    def next(self) -> Any:
        item = self._future.result() if self._future is not None else _step(self._it)
        self._future = None
        if item is _END:
            raise StopIteration
        self._schedule()
        return item

    def state(self) -> dict[str, Any]:
        return self._pre

    def restore(self, state: dict[str, Any]) -> None:
        self._cancel()
        self._it.restore(state)
        self._schedule()

    def _cancel(self) -> None:
        if self._future is not None:
            self._future.cancel()
            try:
                self._future.result()
            except BaseException:  # noqa: BLE001 - discarding: errors are irrelevant now
                pass
            self._future = None

    def close(self) -> None:
        self._cancel()
        self._it.close()


class _Slot:
    __slots__ = ("path", "rows")

    def __init__(self, path: str, rows: RowCursor) -> None:
        self.path, self.rows = path, rows


class _InterleaveIterator(_Iterator):
    def __init__(self, ds: Interleave, ctx: _Context) -> None:
        self._ds, self._ctx = ds, ctx
        self._inputs = RowCursor(ds._parent._iterator(ctx))
        self._slots: list[_Slot | None] = [None] * ds._cycle
        self._cursor, self._started = 0, False
        self._pool: ThreadPoolExecutor | None = None

    def _open(self, path: str, state: dict[str, Any] | None = None) -> _Slot:
        ds = self._ds._reader(path)
        if not isinstance(ds, Dataset) or ds._depth != 0:
            raise TypeError(
                f"interleave reader must return an unbatched Dataset for {path!r}, got {ds!r}"
            )
        if self._pool is None and self._ds._num_parallel > 0:
            self._pool = ThreadPoolExecutor(self._ds._num_parallel, thread_name_prefix="input-read")
        # Readers run side by side in the pool already use the cores: more threads inside each
        # (pyarrow's) would only add hand-offs (measured: ~10% more CPU per row).
        parallel = self._ds._num_parallel > 1
        it = ds._iterator(dataclasses.replace(self._ctx, in_parallel=True) if parallel else self._ctx)
        if state is not None:
            it.restore(state["state"])
        rows = RowCursor(_ReadAhead(it, self._pool))
        if state is not None and state.get("off"):  # rows already taken from the current chunk
            rows.restore({"up": state["state"], "off": state["off"]})
        return _Slot(path, rows)

    def _take(self, slot: _Slot) -> list[st.Span]:
        """The next block of a slot's rows as spans ([] when its reader is exhausted)."""
        block = self._ds._block
        return slot.rows.chunk_spans() if block is None else slot.rows.take_spans(block)

    def _next_input(self) -> str | None:
        parts = self._inputs.take(1)
        if not parts:
            return None
        value = st.row(parts[0], 0)
        return value.decode() if isinstance(value, bytes) else str(value)

    def _next_spans(self) -> list[st.Span]:
        """The next output item as spans of the readers' chunks ([] at the end)."""
        if not self._started:
            self._started = True
            for i in range(len(self._slots)):
                path = self._next_input()
                self._slots[i] = None if path is None else self._open(path)
        while any(s is not None for s in self._slots):
            slot = self._slots[self._cursor]
            if slot is None:
                self._cursor = (self._cursor + 1) % len(self._slots)
                continue
            spans = self._take(slot)
            if not spans:
                slot.rows.up.close()
                path = self._next_input()
                self._slots[self._cursor] = None if path is None else self._open(path)
                continue
            self._cursor = (self._cursor + 1) % len(self._slots)
            return spans
        return []

    def next(self) -> Any:
        spans = self._next_spans()
        if not spans:
            raise StopIteration
        return st.join_spans(spans)

    def pull_spans(self, min_rows: int) -> list[st.Span]:
        spans, rows, block, slots = [], 0, self._ds._block, self._slots
        while rows < min_rows:
            slot = slots[self._cursor] if self._started and block is not None else None
            span = None if slot is None else slot.rows.take_within(block)
            if span is not None:  # the common case, a block inside a reader's chunk, inline
                spans.append(span)
                rows += block
                self._cursor = (self._cursor + 1) % len(slots)
                continue
            item = self._next_spans()
            if not item:
                break
            spans += item
            rows += sum(s.stop - s.start for s in item)
        return spans

    def state(self) -> dict[str, Any]:
        slots: list[dict[str, Any] | None] = []
        for slot in self._slots:
            at = None if slot is None else slot.rows.state()
            slots.append(None if at is None else {"path": slot.path, "state": at["up"], "off": at["off"]})
        return {"inputs": self._inputs.state(), "started": self._started, "cursor": self._cursor,
                "slots": slots}

    def restore(self, state: dict[str, Any]) -> None:
        self._close_slots()
        self._inputs.restore(state["inputs"])
        self._started, self._cursor = bool(state["started"]), int(state["cursor"])
        self._slots = [None if s is None else self._open(s["path"], s) for s in state["slots"]]

    def _close_slots(self) -> None:
        for slot in self._slots:
            if slot is not None:
                slot.rows.up.close()
        self._slots = [None] * len(self._slots)

    def close(self) -> None:
        self._close_slots()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._inputs.up.close()
