"""input_pipelines: streaming, sharded, checkpointable datasets for data larger than memory.

A tf.data-like chainable API over columnar chunks (pyarrow for CSV/Parquet, numpy for .npy)::

    ds = (Dataset.list_files("data/train-*.csv", seed=1)
          .shard()                                   # one share per JAX process
          .interleave(csv_reader(column_names=COLS, column_defaults=DEFAULTS,
                                 label_name="fare_amount"), cycle_length=4)
          .shuffle(10_000, seed=1).repeat().batch(512).prefetch(2))
    it = iter(ds); features, labels = next(it)
    saved = it.state()                               # small JSON-able dict
    it2 = iter(ds); it2.restore(saved)               # continues exactly there

or simply `make_csv_dataset("data/train-*.csv", 512, column_names=..., label_name=...)`.
Which API for which job:

- CSV files, the common case: `make_csv_dataset`.
- Custom file pipelines: `Dataset.list_files` + `interleave(csv_reader(...))` /
  `ParquetDataset` / `NpyDataset` + transformations.
- Data already in memory: `Dataset.from_tensor_slices`.
- Anything else: `Dataset.from_generator` (yield columnar chunks with `batched=True` for speed).
"""

from __future__ import annotations

import numpy.random  # noqa: F401 - numpy loads it on first use: here, not in the first pipeline run

# Dataset's methods import the stages lazily (they subclass it); importing them here keeps
# ~15 ms of imports out of the first pipeline's run.
from input_pipelines import batching, interleave, prefetch, shuffle, transforms  # noqa: F401
from input_pipelines.csv_columns import CsvSpec
from input_pipelines.csv_dataset import CsvDataset, csv_reader
from input_pipelines.dataset import Dataset
from input_pipelines.errors import (
    DataFormatError,
    InputPipelineError,
    NoFilesMatchError,
    StateError,
    StructureError,
    UnreadableFileError,
)
from input_pipelines.iterator import DatasetIterator
from input_pipelines.make_csv import make_csv_dataset
from input_pipelines.npy_reader import NpyDataset
from input_pipelines.parquet_reader import ParquetDataset
from input_pipelines.sources import from_generator, from_tensor_slices, list_files, range_dataset

__all__ = [
    "CsvDataset",
    "CsvSpec",
    "DataFormatError",
    "Dataset",
    "DatasetIterator",
    "InputPipelineError",
    "NoFilesMatchError",
    "NpyDataset",
    "ParquetDataset",
    "StateError",
    "StructureError",
    "UnreadableFileError",
    "csv_reader",
    "from_generator",
    "from_tensor_slices",
    "list_files",
    "make_csv_dataset",
    "range_dataset",
]
