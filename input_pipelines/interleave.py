"""`interleave`: read several inputs (files) at once, in a deterministic round-robin order.

`ds.interleave(reader, cycle_length, num_parallel)` maps each element of `ds` (a file name)
to a dataset `reader(name)` and cycles over `cycle_length` of them, taking one *chunk* (a block
of rows, e.g. ~4 MiB of CSV) from each in turn; an exhausted reader is replaced by the next
input in its slot. With `num_parallel` > 0 every open reader parses its next chunk ahead in a
thread pool, so files are read and parsed in parallel while the output order stays fixed.

State: the input position, the cycle cursor and, per slot, the file name and that reader's own
state (e.g. byte offset and line), so restoring opens the same files at the same offsets.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from input_pipelines import _structure as st
from input_pipelines._cursor import RowCursor
from input_pipelines.dataset import Dataset, _Context, _Iterator

_END = object()


class Interleave(Dataset):
    """Chunks of `reader(input)` datasets for `cycle_length` inputs at a time, round robin."""

    def __init__(
        self,
        parent: Dataset,
        reader: Callable[[str], Dataset],
        cycle_length: int,
        num_parallel: int | None,
    ) -> None:
        if parent._depth != 0:
            raise ValueError("interleave() reads its inputs one by one; call it before batch()")
        if int(cycle_length) < 1:
            raise ValueError(f"cycle_length must be >= 1, got {cycle_length}")
        name = getattr(reader, "__qualname__", type(reader).__name__)
        super().__init__(f"{parent._signature}/interleave({name},{cycle_length})", 0)
        self._parent, self._reader, self._cycle = parent, reader, int(cycle_length)
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


class _Slot:
    __slots__ = ("path", "it", "pre", "future")

    def __init__(self, path: str, it: _Iterator) -> None:
        self.path, self.it = path, it
        self.pre: Any = None
        self.future: Future | None = None


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
        it = ds._iterator(self._ctx)
        if state is not None:
            it.restore(state)
        slot = _Slot(path, it)
        self._read_ahead(slot)
        return slot

    def _read_ahead(self, slot: _Slot) -> None:
        slot.pre = slot.it.state()
        if self._ds._num_parallel > 0:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._ds._num_parallel, thread_name_prefix="input-read")
            slot.future = self._pool.submit(_step, slot.it)

    def _next_input(self) -> str | None:
        parts = self._inputs.take(1)
        if not parts:
            return None
        value = st.row(parts[0], 0)
        return value.decode() if isinstance(value, bytes) else str(value)

    def next(self) -> Any:
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
            item = slot.future.result() if slot.future is not None else _step(slot.it)
            if item is _END:
                slot.it.close()
                path = self._next_input()
                self._slots[self._cursor] = None if path is None else self._open(path)
                continue
            self._read_ahead(slot)
            self._cursor = (self._cursor + 1) % len(self._slots)
            return item
        raise StopIteration

    def state(self) -> dict[str, Any]:
        slots = [None if s is None else {"path": s.path, "state": s.pre} for s in self._slots]
        return {"inputs": self._inputs.state(), "started": self._started, "cursor": self._cursor,
                "slots": slots}

    def restore(self, state: dict[str, Any]) -> None:
        self._close_slots()
        self._inputs.restore(state["inputs"])
        self._started, self._cursor = bool(state["started"]), int(state["cursor"])
        self._slots = [None if s is None else self._open(s["path"], s["state"]) for s in state["slots"]]

    def _close_slots(self) -> None:
        for slot in self._slots:
            if slot is not None:
                if slot.future is not None:
                    slot.future.cancel()
                    try:
                        slot.future.result()
                    except BaseException:  # noqa: BLE001 - closing: errors are irrelevant now
                        pass
                slot.it.close()
        self._slots = [None] * len(self._slots)

    def close(self) -> None:
        self._close_slots()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._inputs.up.close()
