"""Element-wise and positional transformations: `map`, `filter`, `repeat`, `take`, `shard`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from input_pipelines import _structure as st
from input_pipelines._base import _Context, _Iterator
from input_pipelines.dataset import Dataset
from input_pipelines.errors import StructureError


def _call(fn: Callable[..., Any], item: Any) -> Any:
    """tf.data convention: a tuple element is passed as separate arguments."""
    return fn(*item) if isinstance(item, tuple) else fn(item)


class _PassThrough(_Iterator):
    """Base for iterators whose state is their upstream's plus a few counters."""

    def __init__(self, up: _Iterator) -> None:
        self._up = up

    def state(self) -> dict[str, Any]:
        return {"up": self._up.state()}

    def restore(self, state: dict[str, Any]) -> None:
        self._up.restore(state["up"])

    def close(self) -> None:
        self._up.close()


class Map(Dataset):
    """`fn` applied to each batch (after `batch()`) or to each chunk of rows (before it)."""

    def __init__(self, parent: Dataset, fn: Callable[..., Any], num_parallel: int) -> None:
        name = getattr(fn, "__qualname__", type(fn).__name__)
        super().__init__(f"{parent._signature}/map({name})", parent._depth)
        self._parent, self._fn, self._num_parallel = parent, fn, int(num_parallel)

    def _apply(self, item: Any) -> Any:
        out = st.as_arrays(_call(self._fn, item))
        if self._parent._depth == 0:
            n_in, n_out = st.num_rows(item), st.num_rows(out)
            if n_in != n_out:
                raise StructureError(
                    f"map() before batch() must keep one output row per input row (got {n_out} "
                    f"rows for {n_in}); use filter() to drop rows, or map after batch()"
                )
        return out

    def _iterator(self, ctx: _Context) -> _Iterator:
        up = self._parent._iterator(ctx)
        if self._num_parallel > 0:
            from input_pipelines._background import Background

            return Background(up, 2 * self._num_parallel, self._apply, self._num_parallel)
        return _MapIterator(up, self._apply)


class _MapIterator(_PassThrough):
    def __init__(self, up: _Iterator, apply: Callable[[Any], Any]) -> None:
        super().__init__(up)
        self._apply = apply

    def next(self) -> Any:
        return self._apply(self._up.next())


class Filter(Dataset):
    """Elements (rows before `batch()`) for which `predicate` is true."""

    def __init__(self, parent: Dataset, predicate: Callable[..., Any]) -> None:
        name = getattr(predicate, "__qualname__", type(predicate).__name__)
        super().__init__(f"{parent._signature}/filter({name})", parent._depth)
        self._parent, self._pred = parent, predicate

    def _iterator(self, ctx: _Context) -> _Iterator:
        return _FilterIterator(self._parent._iterator(ctx), self._pred, self._parent._depth == 0)


class _FilterIterator(_PassThrough):
    def __init__(self, up: _Iterator, pred: Callable[..., Any], rows: bool) -> None:
        super().__init__(up)
        self._pred, self._rows = pred, rows

    def next(self) -> Any:
        while True:
            item = self._up.next()
            keep = np.asarray(_call(self._pred, item))
            if not self._rows:
                if bool(keep):
                    return item
                continue
            n = st.num_rows(item)
            if keep.dtype != bool or keep.shape != (n,):
                raise StructureError(
                    f"filter() before batch() gets chunks of {n} rows and must return a boolean "
                    f"array of shape ({n},); got dtype {keep.dtype} shape {keep.shape}"
                )
            if keep.any():
                return item if keep.all() else st.take_rows(item, keep)


class Repeat(Dataset):
    """The stream repeated `count` times (None or -1: forever), reshuffled each epoch."""

    def __init__(self, parent: Dataset, count: int | None) -> None:
        super().__init__(f"{parent._signature}/repeat({count})", parent._depth)
        self._parent = parent
        self._count = None if count is None or count < 0 else int(count)

    def _iterator(self, ctx: _Context) -> _Iterator:
        return _RepeatIterator(self._parent, self._count, ctx)


class _RepeatIterator(_Iterator):
    def __init__(self, parent: Dataset, count: int | None, ctx: _Context) -> None:
        self._parent, self._count, self._ctx = parent, count, ctx
        self._epoch, self._seen = 0, False
        self._up = parent._iterator(ctx.with_epoch(0))

    def _start_epoch(self, epoch: int) -> None:
        self._up.close()
        self._epoch, self._seen = epoch, False
        self._up = self._parent._iterator(self._ctx.with_epoch(epoch))

    def next(self) -> Any:
        return self._next(False)

    def next_rows(self) -> Any:
        return self._next(True)

    def _next(self, rows: bool) -> Any:
        while self._count is None or self._epoch < self._count:
            try:
                item = self._up.next_rows() if rows else self._up.next()
            except StopIteration:
                if not self._seen:  # an empty epoch: stop instead of spinning forever
                    raise
                self._start_epoch(self._epoch + 1)
                continue
            self._seen = True
            return item
        raise StopIteration

    def state(self) -> dict[str, Any]:
        return {"epoch": self._epoch, "seen": self._seen, "up": self._up.state()}

    def restore(self, state: dict[str, Any]) -> None:
        self._start_epoch(int(state["epoch"]))
        self._seen = bool(state["seen"])
        self._up.restore(state["up"])

    def close(self) -> None:
        self._up.close()


class Take(Dataset):
    """The first `count` elements (rows before `batch()`)."""

    def __init__(self, parent: Dataset, count: int) -> None:
        super().__init__(f"{parent._signature}/take({count})", parent._depth)
        self._parent, self._count = parent, int(count)

    def _iterator(self, ctx: _Context) -> _Iterator:
        return _TakeIterator(self._parent._iterator(ctx), self._count, self._parent._depth == 0)


class _TakeIterator(_PassThrough):
    def __init__(self, up: _Iterator, count: int, rows: bool) -> None:
        super().__init__(up)
        self._count, self._rows, self._taken = count, rows, 0

    def next(self) -> Any:
        if self._count >= 0 and self._taken >= self._count:
            raise StopIteration
        item = self._up.next()
        if not self._rows:
            self._taken += 1
            return item
        n = st.num_rows(item)
        if self._count >= 0 and self._taken + n > self._count:
            n = self._count - self._taken
            item = st.slice_rows(item, 0, n)
        self._taken += n
        return item

    def state(self) -> dict[str, Any]:
        return {"taken": self._taken, "up": self._up.state()}

    def restore(self, state: dict[str, Any]) -> None:
        self._taken = int(state["taken"])
        self._up.restore(state["up"])


def default_shard() -> tuple[int, int]:
    """(number of shards, this shard's index) = (jax.process_count(), jax.process_index())."""
    import jax

    return jax.process_count(), jax.process_index()


class Shard(Dataset):
    """Every `num_shards`-th element starting at `index` (by default one shard per process)."""

    def __init__(self, parent: Dataset, num_shards: int | None, index: int | None) -> None:
        if num_shards is None or index is None:
            count, idx = default_shard()
            num_shards = count if num_shards is None else num_shards
            index = idx if index is None else index
        if not 0 <= int(index) < int(num_shards):
            raise ValueError(f"shard index must be in [0, {num_shards}), got {index}")
        files = getattr(parent, "num_files", None)
        if files is not None and files < int(num_shards):
            raise ValueError(
                f"shard({num_shards}) of a list of {files} file(s): shard {files} on would read "
                "nothing; shard the rows instead (call shard() after interleave()), or write at "
                "least one file per shard (make_csv_dataset falls back to rows itself)"
            )
        super().__init__(f"{parent._signature}/shard({num_shards},{index})", parent._depth)
        self._parent, self._num, self._index = parent, int(num_shards), int(index)

    def _iterator(self, ctx: _Context) -> _Iterator:
        up = self._parent._iterator(ctx)
        return _ShardIterator(up, self._num, self._index, self._parent._depth == 0)


class _ShardIterator(_PassThrough):
    def __init__(self, up: _Iterator, num: int, index: int, rows: bool) -> None:
        super().__init__(up)
        self._num, self._index, self._rows, self._seen = num, index, rows, 0

    def next(self) -> Any:
        while True:
            item = self._up.next()
            if not self._rows:
                self._seen += 1
                if (self._seen - 1) % self._num == self._index:
                    return item
                continue
            n = st.num_rows(item)
            start = (self._index - self._seen) % self._num
            self._seen += n
            if start < n:
                return st.map_structure(lambda a, s=start: a[s :: self._num], item)

    def state(self) -> dict[str, Any]:
        return {"seen": self._seen, "up": self._up.state()}

    def restore(self, state: dict[str, Any]) -> None:
        self._seen = int(state["seen"])
        self._up.restore(state["up"])
