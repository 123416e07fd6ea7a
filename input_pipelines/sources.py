"""In-memory and generated sources, and file listing.

- `list_files(pattern, shuffle, seed)`: file names matching globs, reshuffled every epoch.
- `from_tensor_slices(tensors)`: rows of in-memory arrays (a dict, tuple or single array).
- `from_generator(generator)`: elements produced by Python code. Its state is the number of
  elements consumed; restoring calls `generator()` again and skips that many (replay: it costs
  as much as producing them, so prefer file sources for large data).
- `range_dataset(*args)`: the integers `range(*args)`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from input_pipelines import _structure as st
from input_pipelines import fs
from input_pipelines._base import _Context, _Iterator
from input_pipelines.dataset import Dataset
from input_pipelines.errors import NoFilesMatchError, StructureError


def list_files(pattern: str | list[str], shuffle: bool = True, seed: int | None = None) -> Dataset:
    """Dataset of the file names (str) matching glob `pattern` (or several patterns).

    Patterns are local paths or URLs (gs://bucket/data/*.csv, s3://...); `**` matches any
    number of directories. URL patterns give URLs, which every reader opens.

    Names are sorted, then shuffled each epoch when `shuffle` (deterministic for a `seed`).
    Raises NoFilesMatchError when nothing matches.
    """
    patterns = [pattern] if isinstance(pattern, (str, os.PathLike)) else list(pattern)
    files: set[str] = set()
    for p in patterns:
        files.update(fs.glob(p))
    if not files:
        where = "" if all(fs.is_url(p) for p in patterns) else f" (working directory {os.getcwd()!r})"
        raise NoFilesMatchError(
            f"no file matches {[os.fspath(p) for p in patterns]!r}{where}; check the path "
            "and that the files were generated (e.g. scripts/make_taxi_data.py)"
        )
    return _FileList(sorted(files), shuffle, seed)


class _FileList(Dataset):
    def __init__(self, files: list[str], shuffle: bool, seed: int | None) -> None:
        super().__init__(f"files({len(files)},{shuffle})")
        self._files = np.array(files, dtype=object)
        self._shuffle, self._seed = shuffle, seed

    @property
    def num_files(self) -> int:
        """How many files the list holds (`shard()` checks there is one per shard)."""
        return len(self._files)

    def _iterator(self, ctx: _Context) -> _Iterator:
        return _FileListIterator(self, ctx)


class _FileListIterator(_Iterator):
    def __init__(self, ds: _FileList, ctx: _Context) -> None:
        self._ds, self._ctx, self._done = ds, ctx, False
        self._seed = ctx.seeds.for_stage(ds._seed, ds._signature) if ds._shuffle else 0

    def next(self) -> Any:
        if self._done:
            raise StopIteration
        self._done = True
        files = self._ds._files
        if self._ds._shuffle:
            rng = np.random.default_rng([self._seed, *self._ctx.epochs])
            files = files[rng.permutation(len(files))]
        return files

    def state(self) -> dict[str, Any]:
        return {"seed": self._seed, "done": self._done}

    def restore(self, state: dict[str, Any]) -> None:
        self._seed, self._done = int(state["seed"]), bool(state["done"])


def from_tensor_slices(tensors: Any, chunk_rows: int = 65536) -> Dataset:
    """Dataset whose elements are the rows (slices along axis 0) of `tensors`.

    As in tf.data, `tensors` is a structure of dicts and tuples whose leaves are arrays; a list
    is one array (`[1, 2, 3]` gives three scalars, `[[1, 2], [3, 4]]` two rows of 2), e.g.
    `({"x": x, "ids": [3, 1, 2]}, labels)`. All arrays must have the same first dimension. The
    arrays are copied when the dataset is made and every element or batch owns its memory: later
    changes to the inputs, or to a yielded batch, change nothing else.
    """
    arrays = _snapshot(tensors)
    return _TensorSlices(arrays, st.num_rows(arrays), int(chunk_rows))


def _snapshot(tree: Any, where: str = "tensors") -> Any:
    """A private copy of `tree`: dicts and tuples are structure, anything else one array."""
    if isinstance(tree, dict):
        return {k: _snapshot(v, f"{where}[{k!r}]") for k, v in tree.items()}
    if isinstance(tree, tuple):
        return tuple(_snapshot(v, f"{where}[{i}]") for i, v in enumerate(tree))
    try:
        a = np.array(tree)
    except ValueError as e:  # ragged nested lists
        raise StructureError(f"from_tensor_slices: {where} is not a rectangular array ({e}); give equally "
                             "long rows, or a dict / tuple of arrays") from e
    if a.dtype.kind == "U":
        a = a.astype(object)
    if a.dtype == object and a.ndim and any(isinstance(x, (list, tuple, dict)) for x in a.ravel()[:1]):
        raise StructureError(f"from_tensor_slices: {where} holds nested Python containers, not values; give "
                             "a rectangular array, or a dict / tuple of arrays")
    return a


class _TensorSlices(Dataset):
    def __init__(self, arrays: Any, rows: int, chunk_rows: int) -> None:
        super().__init__(f"tensor_slices({rows})")
        self._arrays, self._rows, self._chunk = arrays, rows, max(1, chunk_rows)

    def _iterator(self, ctx: _Context) -> _Iterator:
        return _SliceIterator(self._arrays, self._rows, self._chunk)


class _SliceIterator(_Iterator):
    def __init__(self, arrays: Any, rows: int, chunk: int) -> None:
        self._arrays, self._rows, self._chunk, self._pos = arrays, rows, chunk, 0

    def next(self) -> Any:
        if self._pos >= self._rows:
            raise StopIteration
        start, self._pos = self._pos, min(self._rows, self._pos + self._chunk)
        return st.map_structure(np.array, st.slice_rows(self._arrays, start, self._pos))  # owned copies

    def state(self) -> dict[str, Any]:
        return {"row": self._pos}

    def restore(self, state: dict[str, Any]) -> None:
        self._pos = int(state["row"])


def range_dataset(*args: int) -> Dataset:
    """Dataset of the int64 values of `range(*args)`, generated chunk by chunk."""
    r = range(*args)
    return _Range(r.start, r.step, len(r))


class _Range(Dataset):
    def __init__(self, start: int, step: int, length: int) -> None:
        super().__init__(f"range({start},{step},{length})")
        self._start, self._step, self._len = start, step, length

    def _iterator(self, ctx: _Context) -> _Iterator:
        return _RangeIterator(self)


class _RangeIterator(_SliceIterator):
    def __init__(self, ds: _Range) -> None:
        super().__init__(None, ds._len, 65536)
        self._ds = ds

    def next(self) -> Any:
        if self._pos >= self._rows:
            raise StopIteration
        start, self._pos = self._pos, min(self._rows, self._pos + self._chunk)
        ds = self._ds
        return ds._start + ds._step * np.arange(start, self._pos, dtype=np.int64)


def from_generator(
    generator: Callable[[], Iterator[Any]], batched: bool = False, chunk_rows: int = 1024
) -> Dataset:
    """Dataset of the elements yielded by `generator()` (a callable, so it can restart).

    With `batched=False` each yielded value is one element (a row: scalars or arrays in a dict
    or tuple), grouped into chunks of `chunk_rows`. With `batched=True` each yielded value is
    already a columnar chunk of rows (arrays with a leading row axis), the fast way to feed
    custom data. State: the count of values consumed; restore replays the generator.
    """
    if not callable(generator):
        raise TypeError("from_generator needs a callable returning an iterator, e.g. a generator function")
    return _Generator(generator, batched, int(chunk_rows))


class _Generator(Dataset):
    def __init__(self, fn: Callable[[], Iterator[Any]], batched: bool, chunk_rows: int) -> None:
        name = getattr(fn, "__qualname__", type(fn).__name__)
        super().__init__(f"generator({name},{batched})")
        self._fn, self._batched, self._chunk = fn, batched, max(1, chunk_rows)

    def _iterator(self, ctx: _Context) -> _Iterator:
        return _GeneratorIterator(self)


class _GeneratorIterator(_Iterator):
    def __init__(self, ds: _Generator) -> None:
        self._ds, self._gen, self._count, self._done = ds, None, 0, False

    def _source(self) -> Iterator[Any]:
        if self._gen is None:
            self._gen = iter(self._ds._fn())
        return self._gen

    def next(self) -> Any:
        if self._done:
            raise StopIteration
        gen = self._source()
        if self._ds._batched:
            try:
                value = next(gen)
            except StopIteration:
                self._done = True
                raise
            self._count += 1
            return st.as_arrays(value)
        rows = []
        for value in gen:
            rows.append(value)
            if len(rows) == self._ds._chunk:
                break
        self._count += len(rows)
        if len(rows) < self._ds._chunk:
            self._done = True
        if not rows:
            raise StopIteration
        return st.as_arrays(st.stack(rows))

    def state(self) -> dict[str, Any]:
        return {"count": self._count, "done": self._done}

    def restore(self, state: dict[str, Any]) -> None:
        self._gen, self._count, self._done = None, 0, bool(state["done"])
        gen = self._source()
        for _ in range(int(state["count"])):
            next(gen)
        self._count = int(state["count"])
