"""NumPy shards: `.npy` files (memory-mapped, so read in bounded memory) and `.npz` archives.

- `.npy` of a plain array: elements are its rows, returned under `name` when given
  (`{name: row}`) or bare.
- `.npy` of a structured array: elements are dicts of its fields.
- `.npz`: elements are dicts `{key: row}` over its arrays (same first dimension). An `.npz` member
  is loaded whole when the file is opened; use `.npy` shards for data larger than memory.
Pickled object arrays are refused (`allow_pickle=False`). Position: (file index, row).

A `.npy` in a bucket (gs://, s3://) cannot be memory-mapped: its header is read once and each
chunk of rows is one ranged read of its bytes, so memory stays bounded and a restore reads from
the saved row on. (A Fortran-ordered array of 2+ dimensions has no contiguous rows: it is read
whole.)
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from input_pipelines import _structure as st
from input_pipelines import fs
from input_pipelines._base import _Context, _Iterator
from input_pipelines.dataset import Dataset
from input_pipelines.errors import DataFormatError, NoFilesMatchError, UnreadableFileError


class NpyDataset(Dataset):
    """Rows of `.npy` / `.npz` files, in order, as chunks of up to `chunk_rows` rows.

    Args:
      filenames: a path or list of paths, local or gs:// / s3:// URLs.
      name: key for a plain `.npy` array (elements become `{name: row}`); None: bare rows.
      label_name: a field/key returned separately as the label: elements are (features, label).
      chunk_rows: rows per chunk.
    """

    def __init__(
        self,
        filenames: str | os.PathLike | Sequence[str | os.PathLike],
        name: str | None = None,
        label_name: str | None = None,
        chunk_rows: int = 65536,
    ) -> None:
        single = isinstance(filenames, (str, os.PathLike))
        files = [os.fspath(filenames)] if single else [os.fspath(f) for f in filenames]
        if not files:
            raise NoFilesMatchError("NpyDataset got an empty list of files")
        super().__init__(f"npy({name},{label_name},{len(files)})")
        self._files, self._name, self._label, self._chunk = files, name, label_name, int(chunk_rows)

    def _iterator(self, ctx: _Context) -> _Iterator:
        return _NpyIterator(self)


class _NpyIterator(_Iterator):
    def __init__(self, ds: NpyDataset) -> None:
        self._ds, self._file, self._row = ds, 0, 0
        self._data: Any = None
        self._remote: _RemoteNpy | None = None
        self._rows = 0

    def _load(self) -> Any:
        path, ds = self._ds._files[self._file], self._ds
        try:
            arr = _open_arrays(path)
        except (OSError, ValueError) as e:
            raise UnreadableFileError(f"cannot read NumPy file {path!r}: {e}") from e
        if isinstance(arr, _RemoteNpy):
            self._remote = arr
        if isinstance(arr, dict):
            data = arr
        elif arr.dtype.names:
            data = {f: arr[f] for f in arr.dtype.names}
        else:
            data = arr if ds._name is None else {ds._name: arr}
        if ds._label is not None:
            if not isinstance(data, dict) or ds._label not in data:
                raise DataFormatError(f"{path}: no field {ds._label!r} to use as label", path)
            data = (data, data.pop(ds._label))
        try:
            self._rows = st.num_rows(data)
        except ValueError as e:
            raise DataFormatError(f"{path}: {e}", path) from e
        return data

    def next(self) -> Any:
        while self._file < len(self._ds._files):
            if self._data is None:
                self._data = self._load()
            if self._row >= self._rows:
                self.close()
                self._file, self._row = self._file + 1, 0
                continue
            start, self._row = self._row, min(self._rows, self._row + self._ds._chunk)
            return st.map_structure(np.array, st.slice_rows(self._data, start, self._row))
        raise StopIteration

    def state(self) -> dict[str, Any]:
        return {"file": self._file, "row": self._row}

    def restore(self, state: dict[str, Any]) -> None:
        self.close()
        self._file, self._row = int(state["file"]), int(state["row"])

    def close(self) -> None:
        self._data = None
        if self._remote is not None:
            self._remote.close()
            self._remote = None


def _open_arrays(path: str) -> Any:
    """A dict of arrays for an .npz, else the .npy array: memory-mapped, or a `_RemoteNpy` for a URL."""
    if not fs.is_url(path):
        if zipfile.is_zipfile(path):
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        return np.load(path, mmap_mode="r", allow_pickle=False)
    fh = fs.open(path, "rb", url_buffer=1 << 16)  # the header costs one small request
    try:
        if fh.peek(4)[:4] in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip (.npz), as np.load tells them
            with np.load(fh, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        return _RemoteNpy(path, fh)
    except BaseException:
        fh.close()
        raise


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class _RemoteNpy:
    """A `.npy` object in a bucket as a read-only array-like: slicing rows is a ranged read.

    `shape`, `dtype`, `ndim`, `len`, `arr[a:b]` and, for structured arrays, `arr[field][a:b]`
    (fields of one row range share a single read).
    """

    def __init__(self, url: str, fh: Any) -> None:
        self._url, self._fh = url, fh
        version = np.lib.format.read_magic(fh)
        if version not in _HEADER_READERS:
            raise ValueError(f".npy format version {version} is not supported for files in a bucket "
                             "(np.save writes 1.0 or 2.0)")
        self.shape, fortran, self.dtype = _HEADER_READERS[version](fh)
        if self.dtype.hasobject:
            raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
        self.ndim = len(self.shape)
        if not self.ndim:
            raise ValueError("the file holds a scalar, not an array of rows")
        self._start = fh.tell()
        self._row_bytes = self.dtype.itemsize * math.prod(self.shape[1:])
        self._whole = None
        if fortran and self.ndim > 1:  # no contiguous rows
            fh.seek(0)
            self._whole = np.lib.format.read_array(fh, allow_pickle=False)
        self._cached: tuple[int, int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return _RemoteField(self, key)
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise TypeError("rows of a .npy in a bucket are read as contiguous ranges")
        return self._rows(start, max(start, stop))

    def _rows(self, start: int, stop: int) -> np.ndarray:
        if self._whole is not None:
            return self._whole[start:stop]
        if self._cached is None or self._cached[:2] != (start, stop):
            size = (stop - start) * self._row_bytes
            self._fh.seek(self._start + start * self._row_bytes)
            data = self._fh.read(size)
            if len(data) != size:
                raise UnreadableFileError(f"cannot read NumPy file {self._url!r}: it ends before row {stop} of "
                                          f"{len(self)} (truncated upload?)")
            rows = np.frombuffer(data, self.dtype).reshape((stop - start, *self.shape[1:]))
            self._cached = (start, stop, rows)
        return self._cached[2]

    def close(self) -> None:
        """Close the file."""
        self._cached = None
        self._fh.close()


class _RemoteField:
    """One field of a structured `_RemoteNpy`, sliced like an array."""

    def __init__(self, parent: _RemoteNpy, name: str) -> None:
        self._parent, self._name = parent, name
        self.dtype = parent.dtype.fields[name][0]
        self.shape = (*parent.shape, *self.dtype.shape)
        self.ndim = len(self.shape)

    def __getitem__(self, key: slice) -> np.ndarray:
        return self._parent[key][self._name]
