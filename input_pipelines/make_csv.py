"""`make_csv_dataset`: the one-call CSV pipeline, with tf.data's meaning of each argument."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from input_pipelines.csv_dataset import csv_reader
from input_pipelines.dataset import Dataset
from input_pipelines.prefetch import Prefetch
from input_pipelines.sources import list_files
from input_pipelines.transforms import default_shard

logger = logging.getLogger("input_pipelines")


_MIN_CYCLE = 8  # files read at once when shuffling (more on machines with more cores)
_BLOCK_ROWS = 256  # rows taken from each file in turn
_PREFETCH_BATCHES, _PREFETCH_BYTES = 64, 32 << 20  # default read-ahead: hand-offs in bursts of 32
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


def _process_shard() -> tuple[int, int]:
    # A process that never imported jax is not part of a multi-process jax job.
    return default_shard() if "jax" in sys.modules else (1, 0)


def _one_seed(shuffle_seed: int | None, seed: int | None) -> int | None:
    if shuffle_seed is not None and seed is not None and shuffle_seed != seed:
        raise ValueError(f"make_csv_dataset got shuffle_seed={shuffle_seed!r} and seed={seed!r}; pass one of them")
    return seed if shuffle_seed is None else shuffle_seed


def make_csv_dataset(
    file_pattern: str | Sequence[str],
    batch_size: int,
    column_names: Sequence[str] | None = None,
    column_defaults: Sequence[Any] | dict[str, Any] | None = None,
    label_name: str | None = None,
    select_columns: Sequence[str | int] | None = None,
    field_delim: str = ",",
    use_quote_delim: bool = True,
    na_value: str = "",
    header: bool = True,
    num_epochs: int | None = None,
    shuffle: bool = True,
    shuffle_buffer_size: int = 10000,
    shuffle_seed: int | None = None,
    prefetch_buffer_size: int | None = None,
    num_parallel_reads: int | None = None,
    sloppy: bool = False,
    num_rows_for_inference: int | None = 100,
    compression_type: str | None = None,
    ignore_errors: bool = False,
    encoding: str = "utf-8",
    *,
    seed: int | None = None,
    on_error: str | None = None,
    block_size: int = 4 << 20,
) -> Dataset:
    """Batches of `(features_dict, labels)` (or feature dicts) read from CSV files.

    The arguments are tf.data's `make_csv_dataset`'s, in its order and with its meaning and
    defaults; the keyword-only ones after them are this library's.

    Pipeline: `list_files(file_pattern, shuffle, seed)` -> one share of the files per JAX
    process -> `interleave` of max(8, cores) files parsed by one thread per core (1 file at a time when
    `shuffle=False`, so rows keep file order) -> `shuffle(shuffle_buffer_size, seed)` ->
    `repeat(num_epochs)` (None: forever) -> `batch(batch_size, drop_remainder=num_epochs is None)`
    -> `prefetch`. As in tf.data, each epoch reshuffles files and rows; `seed=None` draws a
    fresh seed per iterator (kept in its state, so restoring is still exact).

    Args:
      file_pattern: glob (or list of globs) of CSV files: local paths or URLs (gs://bucket/dir/*.csv,
        s3://...; `**` matches any depth), read with ranged requests (`input_pipelines.fs`).
      batch_size: rows per batch.
      column_names: names of all columns; None reads them from the header of the first file
        (then every file's header must list the same names in the same order).
      column_defaults: default value or type per (selected) column; None infers types.
      label_name: column returned as labels; None yields feature dicts only.
      select_columns: columns to keep (names or indices).
      field_delim: field delimiter.
      use_quote_delim: RFC 4180 double quotes; False reads `"` as an ordinary character.
      na_value: a value that, like an empty field, takes the column default.
      header: whether the first line of every file is a header (checked, then skipped; with
        `column_names` it may rename the columns but not reorder them). An empty file is then
        an error (as in tf.data); a header-only file has no rows.
      num_epochs: passes over the data; None repeats forever.
      shuffle: shuffle files and rows.
      shuffle_buffer_size: rows in the shuffle buffer.
      shuffle_seed: seed for file and row shuffling (same as `seed`).
      prefetch_buffer_size: batches prepared ahead in a background thread (None: 64, fewer
        if they would take more than 32 MiB, at least 2; the thread hands them over in bursts).
      num_parallel_reads: files read and parsed at once, by as many threads (None: when
        shuffling, max(8, cores) files by one thread per core; else 1 file).
      sloppy: accepted for tf.data compatibility; the order is always deterministic here.
      num_rows_for_inference: rows of *each* of the first (up to 8) files used to infer
        types when `column_defaults` is None (tf.data: rows in all); None: all their rows.
      compression_type: "", "GZIP", "ZLIB", or None: GZIP for names ending in ".gz" (tf.data
        would read those as plain text). Decompressed as a stream, in bounded memory.
      ignore_errors: skip and count malformed rows (`on_error="skip"`) instead of raising.
      encoding: text encoding of the files (ASCII-compatible: utf-8, latin-1, cp1252, ...).
      seed: the seed, under this library's name (give `seed` or `shuffle_seed`).
      on_error: "raise" (DataFormatError naming file:line) or "skip" (skip, count and log);
        the same as `ignore_errors` False / True.
      block_size: bytes of CSV parsed at a time per file (from a bucket: one ranged request each;
        larger blocks mean fewer requests on a high-latency store, at that much memory per file).
    """
    seed = _one_seed(shuffle_seed, seed)
    if on_error is None:
        on_error = "skip" if ignore_errors else "raise"
    elif ignore_errors and on_error != "skip":
        raise ValueError(f"make_csv_dataset got ignore_errors=True and on_error={on_error!r}; pass one of them")
    if num_parallel_reads is not None and int(num_parallel_reads) < 1:
        raise ValueError(f"num_parallel_reads must be >= 1 or None, got {num_parallel_reads}")
    if prefetch_buffer_size is not None and int(prefetch_buffer_size) < 0:
        raise ValueError(f"prefetch_buffer_size must be >= 0 or None, got {prefetch_buffer_size}")
    del sloppy  # a deterministic order is one of the orders sloppy=True allows
    files = list_files(file_pattern, shuffle=shuffle, seed=seed)
    names = list(files._files)
    reader = csv_reader(column_names, column_defaults, select_columns, label_name, field_delim,
                        header, on_error, block_size, sample_file=sorted(names), use_quote_delim=use_quote_delim,
                        na_value=na_value, compression_type=compression_type,
                        num_rows_for_inference=num_rows_for_inference, encoding=encoding)
    num_shards, index = _process_shard()
    by_rows = num_shards > 1 and len(names) < num_shards
    if by_rows:
        _warn_once(f"{len(names)} file(s) for {num_shards} processes: every process parses all files "
                   f"and keeps every {num_shards}-th row (as tf.data's AUTO sharding falls back to DATA); "
                   "write at least one file per process to read less")
    elif num_shards > 1:
        files = files.shard(num_shards, index)
    # Like tf.data's make_csv_dataset (cycle_length AUTOTUNE, block_length 1): rows of several
    # files arrive within every shuffle window, so a batch mixes many files.
    cycle = min(len(names), max(_MIN_CYCLE, os.cpu_count() or 1)) if shuffle else 1
    threads = None  # one per core, at most one per file of the cycle
    if num_parallel_reads is not None:  # as tf.data: that many files read by that many threads
        cycle = threads = int(num_parallel_reads)
    ds = files.interleave(reader, cycle_length=cycle, num_parallel=threads,
                          block_length=_BLOCK_ROWS if shuffle else None)
    if by_rows:
        ds = ds.shard(num_shards, index)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer_size, seed)
    ds = ds.repeat(num_epochs).batch(batch_size, drop_remainder=num_epochs is None)
    if prefetch_buffer_size is None:
        return Prefetch(ds, _PREFETCH_BATCHES, max_bytes=_PREFETCH_BYTES)
    return ds.prefetch(int(prefetch_buffer_size))
