"""NumPy shards: `.npy` files (memory-mapped, so read in bounded memory) and `.npz` archives.

- `.npy` of a plain array: elements are its rows, returned under `name` when given
  (`{name: row}`) or bare.
- `.npy` of a structured array: elements are dicts of its fields.
- `.npz`: elements are dicts `{key: row}` over its arrays (same first dimension). An `.npz` member
  is loaded whole when the file is opened; use `.npy` shards for data larger than memory.
Pickled object arrays are refused (`allow_pickle=False`). Position: (file index, row).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from input_pipelines import _structure as st
from input_pipelines._base import _Context, _Iterator
from input_pipelines.dataset import Dataset
from input_pipelines.errors import DataFormatError, NoFilesMatchError, UnreadableFileError


class NpyDataset(Dataset):
    """Rows of `.npy` / `.npz` files, in order, as chunks of up to `chunk_rows` rows.

    Args:
      filenames: a path or list of paths.
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
        self._rows = 0

    def _load(self) -> Any:
        path, ds = self._ds._files[self._file], self._ds
        try:
            if zipfile.is_zipfile(path):
                with np.load(path, allow_pickle=False) as z:
                    data = {k: z[k] for k in z.files}
            else:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
                if arr.dtype.names:
                    data = {f: arr[f] for f in arr.dtype.names}
                else:
                    data = arr if ds._name is None else {ds._name: arr}
        except (OSError, ValueError) as e:
            raise UnreadableFileError(f"cannot read NumPy file {path!r}: {e}") from e
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
                self._data, self._file, self._row = None, self._file + 1, 0
                continue
            start, self._row = self._row, min(self._rows, self._row + self._ds._chunk)
            return st.map_structure(np.array, st.slice_rows(self._data, start, self._row))
        raise StopIteration

    def state(self) -> dict[str, Any]:
        return {"file": self._file, "row": self._row}

    def restore(self, state: dict[str, Any]) -> None:
        self._data = None
        self._file, self._row = int(state["file"]), int(state["row"])

    def close(self) -> None:
        self._data = None
