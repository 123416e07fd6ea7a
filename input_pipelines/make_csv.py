"""`make_csv_dataset`: the one-call CSV pipeline, with tf.data's meaning of each argument."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from input_pipelines.csv_dataset import csv_reader
from input_pipelines.dataset import Dataset
from input_pipelines.sources import list_files
from input_pipelines.transforms import default_shard

logger = logging.getLogger("input_pipelines")


_MIN_CYCLE = 8  # files read at once when shuffling (more on machines with more cores)
_BLOCK_ROWS = 256  # rows taken from each file in turn
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


def _process_shard() -> tuple[int, int]:
    # A process that never imported jax is not part of a multi-process jax job.
    return default_shard() if "jax" in sys.modules else (1, 0)


def make_csv_dataset(
    file_pattern: str | Sequence[str],
    batch_size: int,
    column_names: Sequence[str] | None = None,
    column_defaults: Sequence[Any] | dict[str, Any] | None = None,
    label_name: str | None = None,
    select_columns: Sequence[str] | None = None,
    field_delim: str = ",",
    header: bool = True,
    num_epochs: int | None = None,
    shuffle: bool = True,
    shuffle_buffer_size: int = 10000,
    seed: int | None = None,
    on_error: str = "raise",
) -> Dataset:
    """Batches of `(features_dict, labels)` (or feature dicts) read from CSV files.

    Pipeline: `list_files(file_pattern, shuffle, seed)` -> one share of the files per JAX
    process -> `interleave` of up to 4 files parsed in parallel threads (1 file at a time when
    `shuffle=False`, so rows keep file order) -> `shuffle(shuffle_buffer_size, seed)` ->
    `repeat(num_epochs)` (None: forever) -> `batch(batch_size, drop_remainder=num_epochs is None)`
    -> `prefetch(2)`. As in tf.data, each epoch reshuffles files and rows; `seed=None` draws a
    fresh seed per iterator (kept in its state, so restoring is still exact).

    Args:
      file_pattern: glob (or list of globs) of CSV files.
      batch_size: rows per batch.
      column_names: names of all columns; None reads them from the header.
      column_defaults: default value or type per (selected) column; None infers types.
      label_name: column returned as labels; None yields feature dicts only.
      select_columns: columns to keep (names or indices).
      field_delim: field delimiter.
      header: whether the first line of every file is a header.
      num_epochs: passes over the data; None repeats forever.
      shuffle: shuffle files and rows.
      shuffle_buffer_size: rows in the shuffle buffer.
      seed: seed for file and row shuffling.
      on_error: "raise" (DataFormatError naming file:line) or "skip" (skip, count and log).
    """
    files = list_files(file_pattern, shuffle=shuffle, seed=seed)
    names = list(files._files)
    reader = csv_reader(column_names, column_defaults, select_columns, label_name, field_delim,
                        header, on_error, sample_file=names[0])
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
    ds = files.interleave(reader, cycle_length=cycle, block_length=_BLOCK_ROWS if shuffle else None)
    if by_rows:
        ds = ds.shard(num_shards, index)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer_size, seed)
    return ds.repeat(num_epochs).batch(batch_size, drop_remainder=num_epochs is None).prefetch(2)
