"""`batch` and `unbatch`.

`batch` on rows slices and concatenates columnar chunks (no per-row work), or gathers each
batch's rows in one `take` per column from a shuffle's pool; on batches (a second `batch`) it
stacks elements. `unbatch` of a batch of rows is free: a batch already is
a chunk of rows.
"""

from __future__ import annotations

from typing import Any

from input_pipelines import _structure as st
from input_pipelines._base import _Context, _Iterator
from input_pipelines._cursor import RowCursor
from input_pipelines.dataset import Dataset


class Batch(Dataset):
    """Consecutive elements grouped into batches with a new leading axis of `batch_size`."""

    def __init__(self, parent: Dataset, batch_size: int, drop_remainder: bool) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        super().__init__(f"{parent._signature}/batch({batch_size},{drop_remainder})", parent._depth + 1)
        self._parent, self._n, self._drop = parent, int(batch_size), bool(drop_remainder)

    def _iterator(self, ctx: _Context) -> _Iterator:
        up = self._parent._iterator(ctx)
        if self._parent._depth == 0:
            return _BatchRowsIterator(up, self._n, self._drop)
        return _BatchElementsIterator(up, self._n, self._drop)


class _BatchRowsIterator(_Iterator):
    def __init__(self, up: _Iterator, n: int, drop: bool) -> None:
        self._cursor, self._n, self._drop = RowCursor(up, indexed=True), n, drop

    def next(self) -> Any:
        spans = self._cursor.take_spans(self._n)
        if not spans:
            raise StopIteration
        if self._drop and sum(s.stop - s.start for s in spans) < self._n:
            raise StopIteration
        return st.join_spans(spans, copy=True)  # copies (or gathers): batches never share memory

    def state(self) -> dict[str, Any]:
        return self._cursor.state()

    def restore(self, state: dict[str, Any]) -> None:
        self._cursor.restore(state)

    def close(self) -> None:
        self._cursor.up.close()


class _BatchElementsIterator(_Iterator):
    def __init__(self, up: _Iterator, n: int, drop: bool) -> None:
        self._up, self._n, self._drop = up, n, drop

    def next(self) -> Any:
        elements = []
        for _ in range(self._n):
            try:
                elements.append(self._up.next())
            except StopIteration:
                break
        if not elements or (self._drop and len(elements) < self._n):
            raise StopIteration
        return st.stack(elements)

    def state(self) -> dict[str, Any]:
        return self._up.state()

    def restore(self, state: dict[str, Any]) -> None:
        self._up.restore(state)

    def close(self) -> None:
        self._up.close()


class Unbatch(Dataset):
    """Elements of each batch, one by one (rows again after a single `batch`)."""

    def __init__(self, parent: Dataset) -> None:
        if parent._depth == 0:
            raise ValueError("unbatch() needs a batched dataset; call batch() first")
        super().__init__(f"{parent._signature}/unbatch", parent._depth - 1)
        self._parent = parent

    def _iterator(self, ctx: _Context) -> _Iterator:
        up = self._parent._iterator(ctx)
        if self._parent._depth == 1:
            return up  # a batch of rows is a chunk of rows
        return _UnbatchIterator(up)


class _UnbatchIterator(_Iterator):
    def __init__(self, up: _Iterator) -> None:
        self._cursor = RowCursor(up)

    def next(self) -> Any:
        parts = self._cursor.take(1)
        if not parts:
            raise StopIteration
        return st.row(parts[0], 0)

    def state(self) -> dict[str, Any]:
        return self._cursor.state()

    def restore(self, state: dict[str, Any]) -> None:
        self._cursor.restore(state)

    def close(self) -> None:
        self._cursor.up.close()
