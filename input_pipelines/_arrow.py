"""Arrow -> numpy conversion without pyarrow's pandas shim (it imports pandas on first use)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_NUMERIC = {
    pa.from_numpy_dtype(np.dtype(name)): np.dtype(name)
    for name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64")
}


def to_numpy(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numpy array of `column`: zero-copy (read-only) for numeric columns without nulls,
    object arrays for strings, float NaN for missing numbers."""
    if isinstance(column, pa.ChunkedArray):
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    dtype = _NUMERIC.get(column.type)
    if dtype is not None and column.null_count == 0:
        return np.frombuffer(column.buffers()[1], dtype=dtype, count=len(column),
                             offset=column.offset * dtype.itemsize)
    return column.to_numpy(zero_copy_only=False)
