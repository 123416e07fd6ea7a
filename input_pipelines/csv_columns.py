"""Column specification of CSV files: names, types, defaults, selection and label.

`column_defaults` follows tf.data: one entry per column (per *selected* column when
`select_columns` is given), either a default value whose type sets the column's dtype
(`0.0` -> float32, `0` -> int32, `"x"` -> string, `np.float64(0)` -> float64, `[0.0]` works too),
or a type (`float`, `int`, `str`, `np.float64`, ...) for a required column that has no default.
A dict `{name: default}` is accepted as well. Empty fields take the default; an empty field in a
required column is a data error. Without `column_defaults` the types are inferred from the
first block of a sample file (ints -> int32/int64, floats -> float32, else string).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from input_pipelines.errors import DataFormatError, UnreadableFileError

_SAMPLE_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class Column:
    """One parsed column: its name, arrow type and default (None: required)."""

    name: str
    arrow_type: pa.DataType
    default: Any = None


@dataclasses.dataclass(frozen=True)
class CsvSpec:
    """Everything needed to parse blocks of any file of a CSV dataset (resolved once)."""

    names: tuple[str, ...]  # all columns in the file, in file order
    columns: tuple[Column, ...]  # the selected columns, in output order
    label: str | None
    delimiter: str
    header: bool
    on_error: str
    block_size: int


def _column(name: str, default: Any) -> Column:
    if isinstance(default, (list, tuple)):
        if len(default) != 1:
            raise ValueError(
                f"column_defaults for {name!r}: give a value or a type, got {default!r} (an "
                "empty list means required: pass the type instead, e.g. float)"
            )
        default = default[0]
    if isinstance(default, type) or isinstance(default, np.dtype):
        if default in (str, bytes, object):
            return Column(name, pa.string())
        dt = np.dtype(np.float32 if default is float else np.int32 if default is int else default)
        return Column(name, pa.from_numpy_dtype(dt))
    if isinstance(default, (bool, np.bool_)):
        return Column(name, pa.bool_(), bool(default))
    if isinstance(default, np.generic):
        return Column(name, pa.from_numpy_dtype(default.dtype), default.item())
    if isinstance(default, int):
        return Column(name, pa.int32(), default)
    if isinstance(default, float):
        return Column(name, pa.float32(), default)
    if isinstance(default, (str, bytes)):
        return Column(name, pa.string(), default.decode() if isinstance(default, bytes) else default)
    raise ValueError(f"column_defaults for {name!r}: unsupported default {default!r}")


def read_header(path: str, delimiter: str) -> list[str]:
    """Column names from the first line of `path`."""
    try:
        with open(path, "rb") as f:
            first = f.readline()
    except OSError as e:
        raise UnreadableFileError(f"cannot read CSV header of {path!r}: {e}") from e
    text = first.decode("utf-8-sig").rstrip("\r\n")
    if not text:
        raise DataFormatError(f"{path}:1: empty header line; pass column_names or header=False", path, 1)
    return next(csv.reader(io.StringIO(text), delimiter=delimiter))


def _infer(path: str, names: Sequence[str], wanted: Sequence[str], delimiter: str, header: bool) -> list[Column]:
    try:
        with open(path, "rb") as f:
            data = f.read(_SAMPLE_BYTES)
    except OSError as e:
        raise UnreadableFileError(f"cannot read {path!r} to infer column types: {e}") from e
    if header:
        data = data[data.find(b"\n") + 1 :] if b"\n" in data else b""
    if len(data) == _SAMPLE_BYTES:
        data = data[: data.rfind(b"\n") + 1]
    table = pacsv.read_csv(
        pa.py_buffer(data),
        read_options=pacsv.ReadOptions(column_names=list(names)),
        parse_options=pacsv.ParseOptions(delimiter=delimiter),
        convert_options=pacsv.ConvertOptions(include_columns=list(wanted), null_values=[""]),
    )
    columns = []
    for name in wanted:
        col = table.column(name)
        t = col.type
        if pa.types.is_integer(t):
            valid = col.drop_null()
            info = np.iinfo(np.int32)
            small = len(valid) == 0 or (
                info.min <= pc.min(valid).as_py() and pc.max(valid).as_py() <= info.max
            )
            columns.append(Column(name, pa.int32() if small else pa.int64(), 0))
        elif pa.types.is_floating(t):
            columns.append(Column(name, pa.float32(), 0.0))
        elif pa.types.is_boolean(t):
            columns.append(Column(name, pa.bool_(), False))
        else:
            columns.append(Column(name, pa.string(), ""))
    return columns


def resolve_spec(
    sample_path: str,
    column_names: Sequence[str] | None = None,
    column_defaults: Sequence[Any] | dict[str, Any] | None = None,
    select_columns: Sequence[str] | None = None,
    label_name: str | None = None,
    field_delim: str = ",",
    header: bool = False,
    on_error: str = "raise",
    block_size: int = 4 << 20,
) -> CsvSpec:
    """Resolve names, types, defaults and selection into a `CsvSpec` (reads `sample_path` only
    when names come from the header or types must be inferred)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if len(field_delim) != 1:
        raise ValueError(f"field_delim must be one character, got {field_delim!r}")
    if column_names is None:
        if not header:
            raise ValueError("give column_names, or header=True to read them from the first line")
        column_names = read_header(sample_path, field_delim)
    names = [str(n) for n in column_names]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate column names: {names}")
    if select_columns is not None:
        selected = [names[c] if isinstance(c, int) else str(c) for c in select_columns]
        unknown = [c for c in selected if c not in names]
        if unknown:
            raise ValueError(f"select_columns {unknown} are not columns of the file ({names})")
    else:
        selected = names
    if label_name is not None and label_name not in selected:
        raise ValueError(f"label_name {label_name!r} is not among the selected columns {selected}")
    if column_defaults is None:
        columns = _infer(sample_path, names, selected, field_delim, header)
    elif isinstance(column_defaults, dict):
        missing = [c for c in selected if c not in column_defaults]
        if missing:
            raise ValueError(f"column_defaults has no entry for columns {missing}")
        columns = [_column(c, column_defaults[c]) for c in selected]
    else:
        defaults = list(column_defaults)
        if len(defaults) == len(names) and len(selected) != len(names):
            defaults = [defaults[names.index(c)] for c in selected]
        if len(defaults) != len(selected):
            raise ValueError(
                f"column_defaults has {len(defaults)} entries; expected one per selected column "
                f"({len(selected)}: {selected})"
            )
        columns = [_column(c, d) for c, d in zip(selected, defaults, strict=True)]
    return CsvSpec(tuple(names), tuple(columns), label_name, field_delim, bool(header), on_error,
                   int(block_size))
