"""`shuffle`: a seeded, windowed shuffle buffer whose state is a few integers.

Algorithm (columnar, chunk at a time). The input is cut into windows of at least
`buffer_size` elements (whole upstream chunks). Step k draws a permutation of window W_k with a
generator seeded by (seed, epoch..., k): half of the window, chosen at random, is *carried*
into step k+1; the other half is emitted together with the carry from W_{k-1}, in random
order. Every element therefore leaves within two windows of where it came in, mixed with its
neighbours from both, and the buffer holds at most about 1.5 windows (plus one chunk).
Before `batch()` a step's output is its pool and the shuffled index into it (`next_rows`), so
`batch` gathers each batch's rows once instead of a gather of the whole output plus a copy.

State: the upstream position where the live carry's window started, the step number k, and
how many elements of the current step were already returned (only after `batch()`, where
steps are emitted element by element). Restoring re-reads at most two windows from that
position and recomputes them with the same seeds; the buffer contents are never saved.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from input_pipelines import _structure as st
from input_pipelines._base import _Context, _Iterator
from input_pipelines.dataset import Dataset
from input_pipelines.errors import StateError


class Shuffle(Dataset):
    """Elements shuffled with a buffer of about `buffer_size` elements (rows before `batch()`).

    Deterministic for a given `seed`; with `seed=None` the seed derives from the iterator's
    random root seed, kept in its state. Placed before `repeat()`, every epoch is shuffled
    differently.
    """

    def __init__(self, parent: Dataset, buffer_size: int, seed: int | None) -> None:
        if int(buffer_size) < 1:
            raise ValueError(f"shuffle buffer_size must be >= 1, got {buffer_size}")
        super().__init__(f"{parent._signature}/shuffle({buffer_size})", parent._depth)
        self._parent, self._size, self._seed = parent, int(buffer_size), seed

    def _iterator(self, ctx: _Context) -> _Iterator:
        seed = ctx.seeds.for_stage(self._seed, self._signature)
        up = self._parent._iterator(ctx)
        pool = _RowPool() if self._parent._depth == 0 else _ListPool()
        return _ShuffleIterator(up, self._size, seed, ctx.epochs, pool)


class _RowPool:
    """Pool operations on columnar chunks of rows; a window is a list of row spans."""

    rows = True

    @staticmethod
    def pull(up: _Iterator, size: int) -> list[st.Span]:
        return up.pull_spans(size)

    @staticmethod
    def collect(window: list[st.Span]) -> Any:
        return st.join_spans(window)

    @staticmethod
    def take(pool: Any, index: np.ndarray) -> Any:
        return st.take_rows(pool, index)

    @staticmethod
    def join(carry: Any, window: list[st.Span]) -> Any:
        return st.join_spans([st.whole_span(carry), *window])  # one copy of carry and window


class _ListPool:
    """Pool operations on lists of elements (after `batch()`); a window is a list too."""

    rows = False

    @staticmethod
    def pull(up: _Iterator, size: int) -> list[Any]:
        items = []
        while len(items) < size:
            try:
                items.append(up.next())
            except StopIteration:
                break
        return items

    @staticmethod
    def collect(items: list[Any]) -> list[Any]:
        return items

    @staticmethod
    def take(pool: list[Any], index: np.ndarray) -> list[Any]:
        return [pool[i] for i in index]

    @staticmethod
    def join(a: list[Any], b: list[Any]) -> list[Any]:
        return a + b


class _ShuffleIterator(_Iterator):
    def __init__(self, up: _Iterator, size: int, seed: int, epochs: tuple[int, ...], pool: Any) -> None:
        self._up, self._size, self._seed, self._epochs, self._pool = up, size, seed, epochs, pool
        self._step = 0  # index of the next step to run
        self._carry: Any = None  # elements carried into the next step (None: none)
        self._carry_len = 0
        self._carry_from: Any = None  # upstream state where the carry's window started
        self._out: Any = None  # output of the current step (rows: its index into _out_pool)
        self._out_pool: Any = None  # rows mode: the rows the output index points into
        self._out_len = 0
        self._emitted = 0
        self._cur: tuple[Any, bool] | None = None  # (replay state, carry?) of the current step

    def _rng(self, step: int) -> np.random.Generator:
        return np.random.default_rng([self._seed, *self._epochs, step])

    def _pull_window(self) -> tuple[Any, list[Any] | None, int]:
        """(upstream state before it, the window's parts or None at the end, its elements)."""
        start = self._up.state()
        parts = self._pool.pull(self._up, self._size)
        size = sum(s.stop - s.start for s in parts) if self._pool.rows else len(parts)
        return start, (parts or None), size

    def _keep(self, n: int) -> int:
        return n // 2 if n >= self._size else 0  # a short window is the last one: keep nothing

    def _run_step(self) -> None:
        step = self._step
        prev = (self._carry_from, self._carry is not None)
        start, window, n = self._pull_window()
        if window is None and self._carry is None:
            raise StopIteration
        rng = self._rng(step)
        perm = rng.permutation(n)  # first draw: also replayed by `restore` to rebuild the carry
        h = self._keep(n)
        c = 0 if self._carry is None else self._carry_len
        if window is None:
            pool, index = self._carry, np.arange(c)
        elif self._carry is None:
            pool, index, c = self._pool.collect(window), perm[h:], 0
        else:  # the window's element i is pool[c + i]
            pool = self._pool.join(self._carry, window)
            index = np.concatenate([np.arange(c), c + perm[h:]])
        out_len = len(index)
        order = index[rng.permutation(out_len)]
        if self._pool.rows:  # rows pool[order], gathered by whoever takes them
            self._out_pool, out = pool, order
        else:
            out = self._pool.take(pool, order)
        self._carry = self._pool.take(pool, c + perm[:h]) if h else None
        self._carry_len, self._carry_from = h, start
        self._cur = prev if prev[1] else (start, False)
        self._out, self._out_len, self._emitted, self._step = out, out_len, 0, step + 1

    def _next_out(self) -> np.ndarray:
        """The index into `_out_pool` of the next step's output rows (rows mode)."""
        if self._out is None or self._emitted >= self._out_len:
            self._out = None
            self._run_step()
        out, self._out, self._emitted = self._out, None, self._out_len
        return out

    def next(self) -> Any:
        if self._pool.rows:
            out = self._next_out()  # runs the step that sets _out_pool
            return self._pool.take(self._out_pool, out)
        if self._out is None or self._emitted >= self._out_len:
            self._out = None
            self._run_step()
        self._emitted += 1
        return self._out[self._emitted - 1]

    def next_rows(self) -> Any:
        if not self._pool.rows:
            return super().next_rows()
        out = self._next_out()
        return st.whole_span(self._out_pool)._replace(stop=len(out), index=out)

    def state(self) -> dict[str, Any]:
        if self._out is not None and self._emitted < self._out_len:
            replay, carry = self._cur
            return {"seed": self._seed, "step": self._step - 1, "from": replay, "carry": carry,
                    "emitted": self._emitted}
        carry = self._carry is not None
        start = self._carry_from if carry else self._up.state()
        return {"seed": self._seed, "step": self._step, "from": start, "carry": carry, "emitted": 0}

    def restore(self, state: dict[str, Any]) -> None:
        self._seed, self._step = int(state["seed"]), int(state["step"])
        self._out, self._carry, self._carry_from = None, None, None
        self._up.restore(state["from"])
        if state["carry"]:
            start, window, n = self._pull_window()
            h = self._keep(n)
            if not h or self._step < 1:
                raise StateError("cannot restore shuffle: the input changed since the state was saved")
            perm = self._rng(self._step - 1).permutation(n)
            carry = self._pool.take(self._pool.collect(window), perm[:h])
            self._carry, self._carry_len, self._carry_from = carry, h, start
        if int(state["emitted"]):
            self._run_step()
            self._emitted = int(state["emitted"])

    def close(self) -> None:
        self._up.close()
