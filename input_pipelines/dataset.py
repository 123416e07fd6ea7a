"""`Dataset`: the chainable, tf.data-like pipeline description.

A `Dataset` describes a stream; `iter(dataset)` runs it. Internally every stage passes
*items*: before any `batch()` an item is a columnar chunk of rows (dict / tuple of numpy
arrays sharing their leading dimension), after `batch()` an item is one element (one batch).
So parsing, shuffling and batching are a few numpy calls per chunk, never a loop per row.

Semantics to know (they differ from tf.data only where columnar processing demands it):

- `map(fn)` placed *after* `batch()` calls `fn` once per batch (the fast, recommended pattern).
  Placed *before* `batch()`, `fn` is called on chunks of rows at once (each leaf has a leading
  row axis), so it must act row by row with vectorised numpy (`x * 2`, `np.log1p(x)`) and keep
  the number of rows; a tuple element `(features, labels)` is passed as two arguments.
- `filter(pred)` before `batch()` gets chunks too and must return one boolean per row.
- Every stage is deterministic for a seed, also with threads (results keep their order).
- `iter(ds).state()` is a small JSON-able dict; `restore(state)` resumes exactly there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from input_pipelines._base import _Context, _Iterator

if TYPE_CHECKING:
    from input_pipelines.iterator import DatasetIterator


class Dataset:
    """A chainable description of a stream of elements (dicts of numpy arrays or tuples).

    Build one from a source (`Dataset.list_files`, `Dataset.from_tensor_slices`,
    `Dataset.from_generator`, `CsvDataset`, `ParquetDataset`, `NpyDataset`,
    `make_csv_dataset`) and chain transformations. `iter(dataset)` returns a
    `DatasetIterator` with `state()` / `restore(state)`.
    """

    #: number of `batch()` levels applied: 0 means items are chunks of rows.
    _depth: int = 0

    def __init__(self, signature: str, depth: int = 0) -> None:
        self._signature = signature
        self._depth = depth

    # -- running -------------------------------------------------------------------------
    # The imports inside methods are lazy: those modules subclass Dataset (the one import cycle left).
    def _iterator(self, ctx: _Context) -> _Iterator:
        raise NotImplementedError

    def __iter__(self) -> DatasetIterator:
        from input_pipelines.iterator import DatasetIterator

        return DatasetIterator(self)

    def as_numpy_iterator(self) -> DatasetIterator:
        """Same as `iter(dataset)` (name kept for tf.data users)."""
        return iter(self)

    @property
    def fingerprint(self) -> str:
        """A short hash of the pipeline's structure, stored in iterator states."""
        return hashlib.sha1(self._signature.encode()).hexdigest()[:16]

    # -- sources -------------------------------------------------------------------------
    @staticmethod
    def list_files(pattern: str | list[str], shuffle: bool = True, seed: int | None = None) -> Dataset:
        """Dataset of file names matching a glob (or list of globs); see `sources.list_files`."""
        from input_pipelines.sources import list_files

        return list_files(pattern, shuffle=shuffle, seed=seed)

    @staticmethod
    def from_tensor_slices(tensors: Any, chunk_rows: int = 65536) -> Dataset:
        """Dataset of the rows of in-memory arrays; see `sources.from_tensor_slices`."""
        from input_pipelines.sources import from_tensor_slices

        return from_tensor_slices(tensors, chunk_rows=chunk_rows)

    @staticmethod
    def from_generator(
        generator: Callable[[], Iterator[Any]], batched: bool = False, chunk_rows: int = 1024
    ) -> Dataset:
        """Dataset of the elements a generator yields; see `sources.from_generator`."""
        from input_pipelines.sources import from_generator

        return from_generator(generator, batched=batched, chunk_rows=chunk_rows)

    @staticmethod
    def range(*args: int) -> Dataset:
        """Dataset of the integers `range(*args)` (int64), like tf.data's `Dataset.range`."""
        from input_pipelines.sources import range_dataset

        return range_dataset(*args)

    # -- transformations -----------------------------------------------------------------
    def shard(self, num_shards: int | None = None, index: int | None = None) -> Dataset:
        """Keep every `num_shards`-th element starting at `index` (rows before `batch()`).

        Defaults to one shard per JAX process: `jax.process_count()` / `jax.process_index()`.
        """
        from input_pipelines.transforms import Shard

        return Shard(self, num_shards, index)

    def interleave(
        self,
        reader: Callable[[str], Dataset],
        cycle_length: int = 4,
        num_parallel: int | None = None,
        block_length: int | None = None,
    ) -> Dataset:
        """Read `cycle_length` inputs at once, `block_length` rows (None: a chunk) from each in
        turn; see `interleave.Interleave`."""
        from input_pipelines.interleave import Interleave

        return Interleave(self, reader, cycle_length, num_parallel, block_length)

    def map(self, fn: Callable[..., Any], num_parallel: int = 0) -> Dataset:
        """Apply `fn` to each batch (after `batch()`) or to chunks of rows (before it).

        `num_parallel` > 0 runs `fn` in that many threads; results keep their order.
        """
        from input_pipelines.transforms import Map

        return Map(self, fn, num_parallel)

    def filter(self, predicate: Callable[..., Any]) -> Dataset:
        """Keep elements (rows before `batch()`, vectorised) for which `predicate` is true."""
        from input_pipelines.transforms import Filter

        return Filter(self, predicate)

    def shuffle(self, buffer_size: int, seed: int | None = None) -> Dataset:
        """Shuffle with a buffer of about `buffer_size` elements; see `shuffle.Shuffle`."""
        from input_pipelines.shuffle import Shuffle

        return Shuffle(self, buffer_size, seed)

    def batch(self, batch_size: int, drop_remainder: bool = False) -> Dataset:
        """Group consecutive elements into batches of `batch_size` (last may be smaller)."""
        from input_pipelines.batching import Batch

        return Batch(self, batch_size, drop_remainder)

    def unbatch(self) -> Dataset:
        """Split batches back into their elements (inverse of `batch`)."""
        from input_pipelines.batching import Unbatch

        return Unbatch(self)

    def repeat(self, count: int | None = None) -> Dataset:
        """Repeat the stream `count` times (None: forever); each epoch reshuffles."""
        from input_pipelines.transforms import Repeat

        return Repeat(self, count)

    def take(self, count: int) -> Dataset:
        """The first `count` elements."""
        from input_pipelines.transforms import Take

        return Take(self, count)

    def prefetch(self, buffer_size: int = 2) -> Dataset:
        """Produce up to `buffer_size` items ahead in a background thread."""
        from input_pipelines.prefetch import Prefetch

        return Prefetch(self, buffer_size)
