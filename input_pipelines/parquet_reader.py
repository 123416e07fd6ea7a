"""Parquet reading: record batches of each row group -> columnar numpy chunks.

Files in a bucket (gs://, s3://) are read through `fs.open`: pyarrow fetches the footer and
then each row group's column chunks with ranged reads, never the whole file.

Position: (file index, row group, record batches already read in that row group). Restoring
opens the file at that row group and skips the batches already read in it (decoding them again:
at most one row group, bounded by the writer's row-group size).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from input_pipelines import fs
from input_pipelines._arrow import to_numpy
from input_pipelines._base import _Context, _Iterator
from input_pipelines.dataset import Dataset
from input_pipelines.errors import DataFormatError, NoFilesMatchError, UnreadableFileError


def _null_error(path: str, name: str, kind: pa.DataType, where: str) -> DataFormatError:
    return DataFormatError(
        f"{path}: column {name!r} ({kind}) has missing values {where}, which {kind} cannot hold "
        f"(an integer, bool or string column would change type between batches); pass "
        f"column_defaults={{{name!r}: <value>}} to fill them, or store the column as float", path)


def column_to_numpy(column: pa.Array | pa.ChunkedArray, name: str, path: str, default: Any = None,
                    where: str = "") -> np.ndarray:
    """One column as a numpy array whose dtype depends only on the column's Arrow type.

    Missing values become NaN in float columns and NaT in temporal ones, `default` where given,
    and are an error (DataFormatError naming the file and column) otherwise. Fixed-size lists
    of n values come back as (rows, n) arrays.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    kind = column.type
    if column.null_count:
        if default is not None and not pa.types.is_fixed_size_list(kind):
            column = pc.fill_null(column, pa.scalar(default, kind))
        elif not (pa.types.is_floating(kind) or pa.types.is_temporal(kind)):
            raise _null_error(path, name, kind, where)
    if pa.types.is_fixed_size_list(kind):
        values = column_to_numpy(column.flatten(), name, path, default, where)
        return values.reshape(len(column), kind.list_size, *values.shape[1:])
    return to_numpy(column)


def table_to_arrays(batch: pa.RecordBatch | pa.Table, label_name: str | None, path: str = "",
                    defaults: dict[str, Any] | None = None, where: str = "") -> Any:
    """Numpy arrays per column (strings as object arrays), label split off when named."""
    defaults = defaults or {}
    out = {name: column_to_numpy(batch.column(i), name, path, defaults.get(name), where)
           for i, name in enumerate(batch.column_names)}
    if label_name is None:
        return out
    return out, out.pop(label_name)


class ParquetDataset(Dataset):
    """Rows of one or more Parquet files as columnar chunks of up to `batch_rows` rows.

    Every column's numpy dtype follows from the file's schema, the same in every batch: missing
    values are NaN (float) or NaT (timestamps), filled from `column_defaults`, or an error.
    Fixed-size list columns come back as (rows, n) arrays.

    Args:
      filenames: a path or list of paths, local or gs:// / s3:// URLs (for many files,
        `interleave(ParquetDataset)`).
      columns: columns to read (default: all).
      label_name: a column returned separately as the label: elements are (features, label).
      batch_rows: rows per chunk.
      column_defaults: value per column name filling its missing values.
    """

    def __init__(
        self,
        filenames: str | os.PathLike | Sequence[str | os.PathLike],
        columns: Sequence[str] | None = None,
        label_name: str | None = None,
        batch_rows: int = 65536,
        column_defaults: dict[str, Any] | None = None,
    ) -> None:
        single = isinstance(filenames, (str, os.PathLike))
        files = [os.fspath(filenames)] if single else [os.fspath(f) for f in filenames]
        if not files:
            raise NoFilesMatchError("ParquetDataset got an empty list of files")
        if columns is not None:
            columns = list(columns)
        if columns is not None and label_name is not None and label_name not in columns:
            raise ValueError(f"label_name {label_name!r} is not among columns {columns}")
        defaults = dict(column_defaults or {})
        super().__init__(f"parquet({columns},{label_name},{len(files)},{sorted(defaults)})")
        self._files, self._columns, self._label, self._rows = files, columns, label_name, int(batch_rows)
        self._defaults = defaults

    def _iterator(self, ctx: _Context) -> _Iterator:
        return _ParquetIterator(self)


class _ParquetIterator(_Iterator):
    def __init__(self, ds: ParquetDataset) -> None:
        self._ds = ds
        self._file, self._group, self._batch = 0, 0, 0
        self._pf: pq.ParquetFile | None = None
        self._batches: Any = None
        self._schema: list[pa.Field] | None = None

    def _open(self) -> pq.ParquetFile:
        ds, path = self._ds, self._ds._files[self._file]
        try:
            pf = _parquet_file(path)
        except (OSError, pa.ArrowInvalid) as e:
            raise UnreadableFileError(f"cannot read Parquet file {path!r}: {e}") from e
        schema = pf.schema_arrow
        wanted = list(ds._columns or []) + ([ds._label] if ds._label is not None else [])
        wanted += list(ds._defaults)
        unknown = [c for c in dict.fromkeys(wanted) if c not in schema.names]
        if unknown:
            pf.close(force=True)
            raise DataFormatError(f"{path}: no column {', '.join(map(repr, unknown))} (columns, label_name or "
                                  f"column_defaults); the file has {schema.names}", path)
        selected = [schema.field(c) for c in (ds._columns or schema.names)]
        if self._schema is None and self._file > 0:  # restored past the first file
            head = _parquet_file(ds._files[0])
            first = head.schema_arrow
            head.close(force=True)
            self._schema = [first.field(c) for c in (ds._columns or first.names)]
        if self._schema is None:
            self._schema = selected
        elif [(f.name, f.type) for f in selected] != [(f.name, f.type) for f in self._schema]:
            pf.close(force=True)
            raise DataFormatError(
                f"{path}: columns {[(f.name, str(f.type)) for f in selected]} differ from those of "
                f"{ds._files[0]} {[(f.name, str(f.type)) for f in self._schema]}; files of one "
                "ParquetDataset must share their schema (select columns with `columns`)", path)
        return pf

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
                where = f"in row group {self._group} (rows from {self._first_row() + (self._batch - 1) * ds._rows})"
                return table_to_arrays(batch, ds._label, ds._files[self._file], ds._defaults, where)
        raise StopIteration

    def _first_row(self) -> int:
        meta = self._pf.metadata
        return sum(meta.row_group(g).num_rows for g in range(self._group))

    def state(self) -> dict[str, Any]:
        return {"file": self._file, "group": self._group, "batch": self._batch}

    def restore(self, state: dict[str, Any]) -> None:
        self.close()
        self._file, self._group, self._batch = int(state["file"]), int(state["group"]), int(state["batch"])

    def close(self) -> None:
        self._batches = None
        if self._pf is not None:
            self._pf.close(force=True)  # force: also a file object opened by _parquet_file
            self._pf = None


def _parquet_file(path: str) -> pq.ParquetFile:
    """`path` opened by pyarrow; a URL through `fs.open`, whose ranged reads pyarrow coalesces."""
    if not fs.is_url(path):
        return pq.ParquetFile(path)
    fh = fs.open(path, "rb")
    try:
        return pq.ParquetFile(fh)
    except BaseException:
        fh.close()
        raise
