"""Parquet reading: record batches of each row group -> columnar numpy chunks.

Position: (file index, row group, record batches already read in that row group). Restoring
opens the file at that row group and skips the batches already read in it (decoding them again:
at most one row group, bounded by the writer's row-group size).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from input_pipelines._arrow import to_numpy
from input_pipelines.dataset import Dataset, _Context, _Iterator
from input_pipelines.errors import NoFilesMatchError, UnreadableFileError


def table_to_arrays(batch: pa.RecordBatch | pa.Table, label_name: str | None) -> Any:
    """Numpy arrays per column (strings as object arrays), label split off when named."""
    out = {name: to_numpy(batch.column(i)) for i, name in enumerate(batch.column_names)}
    if label_name is None:
        return out
    return out, out.pop(label_name)


class ParquetDataset(Dataset):
    """Rows of one or more Parquet files as columnar chunks of up to `batch_rows` rows.

    Args:
      filenames: a path or list of paths (for many files, `interleave(ParquetDataset)`).
      columns: columns to read (default: all).
      label_name: a column returned separately as the label: elements are (features, label).
      batch_rows: rows per chunk.
    """

    def __init__(
        self,
        filenames: str | Sequence[str],
        columns: Sequence[str] | None = None,
        label_name: str | None = None,
        batch_rows: int = 65536,
    ) -> None:
        files = [str(filenames)] if isinstance(filenames, str) else [str(f) for f in filenames]
        if not files:
            raise NoFilesMatchError("ParquetDataset got an empty list of files")
        if columns is not None and label_name is not None and label_name not in columns:
            raise ValueError(f"label_name {label_name!r} is not among columns {list(columns)}")
        super().__init__(f"parquet({columns},{label_name},{len(files)})")
        self._files, self._columns, self._label, self._rows = files, columns, label_name, int(batch_rows)

    def _iterator(self, ctx: _Context) -> _Iterator:
        return _ParquetIterator(self)


class _ParquetIterator(_Iterator):
    def __init__(self, ds: ParquetDataset) -> None:
        self._ds = ds
        self._file, self._group, self._batch = 0, 0, 0
        self._pf: pq.ParquetFile | None = None
        self._batches: Any = None

    def _open(self) -> pq.ParquetFile:
        path = self._ds._files[self._file]
        try:
            return pq.ParquetFile(path)
        except (OSError, pa.ArrowInvalid) as e:
            raise UnreadableFileError(f"cannot read Parquet file {path!r}: {e}") from e

    def next(self) -> Any:
        ds = self._ds
        while self._file < len(ds._files):
            if self._pf is None:
                self._pf = self._open()
            if self._group >= self._pf.num_row_groups:
                self.close()
                self._file, self._group, self._batch = self._file + 1, 0, 0
                continue
            if self._batches is None:
                self._batches = self._pf.iter_batches(ds._rows, row_groups=[self._group], columns=ds._columns)
                for _ in range(self._batch):
                    next(self._batches)
            batch = next(self._batches, None)
            if batch is None:
                self._batches, self._group, self._batch = None, self._group + 1, 0
                continue
            self._batch += 1
            if batch.num_rows:
                return table_to_arrays(batch, ds._label)
        raise StopIteration

    def state(self) -> dict[str, Any]:
        return {"file": self._file, "group": self._group, "batch": self._batch}

    def restore(self, state: dict[str, Any]) -> None:
        self.close()
        self._file, self._group, self._batch = int(state["file"]), int(state["group"]), int(state["batch"])

    def close(self) -> None:
        self._batches = None
        if self._pf is not None:
            self._pf.close()
            self._pf = None
