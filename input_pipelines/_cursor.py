"""`RowCursor`: takes exact numbers of rows from a stream of row chunks, with a small state.

Its state is the upstream state *before* the chunk being consumed plus the number of rows
already taken from it; restoring re-reads that one chunk and skips the taken rows.
"""

from __future__ import annotations

from typing import Any

from input_pipelines import _structure as st
from input_pipelines._base import _Iterator
from input_pipelines.errors import StateError


class RowCursor:
    """Row-exact reader over an iterator of row chunks (its items as `up.next_rows()` spans
    when `indexed`: then the spans it returns may carry an index, see `_structure.Span`)."""

    def __init__(self, up: _Iterator, indexed: bool = False) -> None:
        self.up, self._indexed = up, indexed
        self._build: Any = None
        self._rows = 0
        self._off = 0
        self._pre: dict[str, Any] | None = None
        self._flat: list[Any] = []
        self._index: Any = None
        self._base = 0  # where the current item's rows start in `_index` / the chunk

    def _fetch(self) -> bool:
        while True:
            self._pre = self.up.state()
            try:
                span = self.up.next_rows() if self._indexed else st.whole_span(self.up.next())
            except StopIteration:
                self._build = None
                return False
            rows = span.stop - span.start
            if rows:
                self._build, self._flat, self._index = span.build, span.flat, span.index
                self._base, self._rows, self._off = span.start, rows, 0
                return True

    def take_spans(self, n: int) -> list[st.Span]:
        """Up to `n` rows as spans of upstream chunks (fewer only when the stream ends)."""
        spans = []
        while n > 0:
            if self._build is None or self._off >= self._rows:
                if not self._fetch():
                    break
            k = min(n, self._rows - self._off)
            a = self._base + self._off
            spans.append(st.Span(self._build, self._flat, a, a + k, self._index))
            self._off += k
            n -= k
        return spans

    def take_within(self, n: int) -> st.Span | None:
        """`n` rows as one span if the current chunk still holds them, else None (nothing taken)."""
        off = self._off
        if self._build is None or off + n > self._rows:
            return None
        self._off = off + n
        a = self._base + off
        return st.Span(self._build, self._flat, a, a + n, self._index)

    def take(self, n: int) -> list[Any]:
        """Up to `n` rows as a list of chunk slices (fewer only when the stream ends)."""
        return [st.join_spans([s]) for s in self.take_spans(n)]

    def chunk_spans(self) -> list[st.Span]:
        """The rest of the current chunk, or the next whole chunk ([] when the stream ends)."""
        if self._build is None or self._off >= self._rows:
            if not self._fetch():
                return []
        return self.take_spans(self._rows - self._off)

    def state(self) -> dict[str, Any]:
        """Position: upstream state before the current chunk and rows taken from it."""
        if self._build is not None and self._off < self._rows:
            return {"up": self._pre, "off": self._off}
        return {"up": self.up.state(), "off": 0}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a position returned by `state()`."""
        self.up.restore(state["up"])
        self._build = None
        off = int(state["off"])
        if off:
            if not self._fetch() or off >= self._rows:
                raise StateError(
                    f"cannot restore: the data changed since the state was saved (offset {off} "
                    f"beyond the chunk of {self._rows} rows)"
                )
            self._off = off
