"""float32 columns parsed as float64 and narrowed, with the result of a direct float32 parse.

pyarrow converts decimal text with fast_float. For float32 its fast path takes at most 7
significant digits, so typical data (-73.996786) goes down the slow path, about a fifth of the
whole parse; for float64 the fast path takes 15 digits. Narrowing the float64 to float32 rounds
twice, which can differ from one correct rounding in two cases only: the float64 landed exactly
on a midpoint between two float32s (rounding is monotonic, so it cannot cross one), or the
value is in float32's subnormal range. A block holding such a value is parsed again as float32
directly, so every value equals pyarrow's own float32 parse (tests compare them).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_BELOW_HALF = np.uint64((1 << 29) - 1)  # float64 mantissa bits that float32 drops
_HALF = np.uint64(1 << 28)  # ... set to exactly half a float32 unit: a midpoint
_MAGNITUDE = np.uint64((1 << 63) - 1)
_TINY_LESS_1 = np.array(np.finfo(np.float32).tiny, np.float64).view(np.uint64) - np.uint64(1)


def wide_type(arrow_type: pa.DataType) -> pa.DataType:
    """The type to parse a column of `arrow_type` as (float64 for float32, else itself)."""
    return pa.float64() if arrow_type == pa.float32() else arrow_type


def rounds_twice(values: np.ndarray) -> bool:
    """Whether narrowing some of these float64 values may differ from a direct float32 parse."""
    bits = values.view(np.uint64)
    if np.any((bits & _BELOW_HALF) == _HALF):
        return True
    magnitude = bits & _MAGNITUDE
    magnitude -= np.uint64(1)  # zero wraps around to the largest: it is not tiny
    return bool(magnitude.min(initial=_MAGNITUDE) < _TINY_LESS_1)


def float64_values(column: pa.Array) -> np.ndarray:
    """The value buffer of a float64 arrow array as numpy (null slots hold arbitrary values)."""
    return np.frombuffer(column.buffers()[1], np.float64, count=len(column), offset=column.offset * 8)


def narrow(values: np.ndarray) -> np.ndarray:
    """float64 values as float32 (too large: +-inf, as a direct parse gives)."""
    with np.errstate(over="ignore"):
        return values.astype(np.float32)
