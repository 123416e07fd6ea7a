"""Column specification of CSV files: names, types, defaults, selection and label.

`column_defaults` follows tf.data: one entry per column (per *selected* column when
`select_columns` is given), either a default value whose type sets the column's dtype
(`0.0` -> float32, `0` -> int32, `"x"` -> string, `np.float64(0)` -> float64, `[0.0]` works too),
or a type (`float`, `int`, `str`, `np.float64`, ...) for a required column that has no default.
A dict `{name: default}` is accepted as well. Empty fields (and `na_value`) take the default;
an empty field in a required column is a data error.

Without `column_defaults` the types are inferred, as in tf.data, from the first
`num_rows_for_inference` rows (None: all rows) -- here of *each* of the first few files (up to
`INFER_FILES`), so one file's odd column is seen: ints -> int32 (int64 when a sampled value
needs it), floats -> float32, true/false -> bool, anything else or no value -> string. A later
value that does not fit the inferred type is a `DataFormatError` that says to pass
`column_defaults`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from input_pipelines._arrow import _NUMERIC
from input_pipelines._csv_records import (
    BlockReader,
    check_compression,
    compression_of,
    open_csv,
    read_header_record,
    records_end,
)
from input_pipelines.errors import DataFormatError, UnreadableFileError

#: How many of the (sorted) files type inference samples.
INFER_FILES = 8


@dataclasses.dataclass(frozen=True)
class Column:
    """One parsed column: its name, arrow type, default (None: required), whether inferred."""

    name: str
    arrow_type: pa.DataType
    default: Any = None
    inferred: bool = False


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
    quoting: bool = True  # RFC 4180 double quotes (tf.data's use_quote_delim)
    na_values: tuple[str, ...] = ("",)  # fields that take the column default
    compression: str | None = None  # None: GZIP for names ending in .gz, else none
    encoding: str = "utf-8"
    names_from_header: bool = False  # every file's header must then equal `names`
    inferred_from: str = ""  # where inferred types came from (for error messages)


def _column(name: str, default: Any) -> Column:
    column = _typed_column(name, default)
    dtype = _NUMERIC.get(column.arrow_type)
    if column.default is not None and dtype is not None and dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not info.min <= column.default <= info.max:
            raise ValueError(f"column_defaults for {name!r}: {default!r} does not fit {dtype}; pass a "
                             f"wider type, e.g. np.int64({default!r})")
    return column


def _typed_column(name: str, default: Any) -> Column:
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


def parse_header(record: bytes, path: str, delimiter: str, quoting: bool, encoding: str) -> list[str]:
    """Column names from a header record (its raw bytes, line end included)."""
    try:
        text = record.decode("utf-8-sig" if encoding.replace("_", "-").lower() in ("utf-8", "utf8") else encoding)
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}:1: the header is not valid {encoding}: {e}", path, 1) from None
    text = text.rstrip("\r\n")
    if not text:
        raise DataFormatError(f"{path}:1: empty header line; pass column_names and header=False, or "
                              "fix the file", path, 1)
    dialect = {"delimiter": delimiter, "quoting": csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE}
    try:
        return next(csv.reader(io.StringIO(text, newline=""), strict=quoting, **dialect))
    except csv.Error as e:
        raise DataFormatError(f"{path}:1: malformed header line: {e}", path, 1) from None


def read_header(path: str, delimiter: str = ",", quoting: bool = True, compression: str | None = None,
                encoding: str = "utf-8") -> tuple[list[str], int]:
    """Column names from the first record of `path` and that record's size in bytes.

    An empty file has no header: that is an error, as in tf.data (pass header=False for files
    without one).
    """
    fh = open_csv(path, compression_of(path, compression), url_buffer=1 << 16)  # a bucket: fetch 64 KiB
    try:
        record = read_header_record(fh, quoting)
    except (OSError, EOFError, zlib.error) as e:
        raise UnreadableFileError(f"cannot read the CSV header of {path!r}: {e}") from e
    finally:
        fh.close()
    if not record:
        raise DataFormatError(f"{path}: empty file, but header=True expects a header line; remove "
                              "the file or write its header", path, 1)
    return parse_header(record, path, delimiter, quoting, encoding), len(record)


def check_header(path: str, found: Sequence[str], spec: CsvSpec) -> None:
    """Raise DataFormatError when a file's header does not match the dataset's columns.

    Names read from the first file's header must be identical (and in the same order) in every
    file, as tf.data requires. With explicit `column_names` a header may rename the columns,
    but it must have as many and not list any of `column_names` at another position (that
    would put values under the wrong names).
    """
    names, found = list(spec.names), list(found)
    if spec.names_from_header:
        if found != names:
            raise DataFormatError(
                f"{path}:1: header columns {found} differ from those of the first file {names}; "
                "all files of a dataset need the same columns in the same order (rewrite the "
                "file, or pass column_names and header=True to name the columns yourself)", path, 1)
        return
    if len(found) != len(names):
        raise DataFormatError(f"{path}:1: the header has {len(found)} columns but column_names has "
                              f"{len(names)} ({names})", path, 1)
    position = {n: j for j, n in enumerate(names)}
    moved = next(((n, i, position[n]) for i, n in enumerate(found) if position.get(n, i) != i), None)
    if moved:
        n, i, j = moved
        raise DataFormatError(
            f"{path}:1: the header has column {n!r} at position {i} but column_names has it at "
            f"{j}: its values would be read under another name; make column_names follow the "
            "file's column order", path, 1)


_RANK = {"null": 0, "bool": 1, "int": 2, "float": 3, "string": 4}


def _kind(t: pa.DataType) -> str:
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    return "string"


def _merge(a: str, b: str) -> str:
    if "null" in (a, b):
        return b if a == "null" else a
    if a == b:
        return a
    if "bool" in (a, b) or "string" in (a, b):
        return "string"
    return "float"


class _Evidence:
    """What the sampled rows say about each column's type."""

    def __init__(self, wanted: Sequence[str]) -> None:
        self.kinds = dict.fromkeys(wanted, "null")
        self.lo: dict[str, int] = {}
        self.hi: dict[str, int] = {}
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        for name in self.kinds:
            col = table.column(name)
            kind = _kind(col.type)
            self.kinds[name] = _merge(self.kinds[name], kind)
            if kind == "int" and col.null_count < len(col):
                bounds = pc.min_max(col)
                self.lo[name] = min(self.lo.get(name, 0), bounds["min"].as_py())
                self.hi[name] = max(self.hi.get(name, 0), bounds["max"].as_py())

    def columns(self) -> list[Column]:
        out = []
        info = np.iinfo(np.int32)
        for name, kind in self.kinds.items():
            if kind == "int":
                small = info.min <= self.lo.get(name, 0) and self.hi.get(name, 0) <= info.max
                out.append(Column(name, pa.int32() if small else pa.int64(), 0, True))
            elif kind == "float":
                out.append(Column(name, pa.float32(), 0.0, True))
            elif kind == "bool":
                out.append(Column(name, pa.bool_(), False, True))
            else:  # no value seen (as tf.data) or text
                out.append(Column(name, pa.string(), "", True))
        return out


def _infer(paths: Sequence[str], names: Sequence[str], wanted: Sequence[str], options: dict[str, Any],
           rows: int | None) -> list[Column]:
    """Column types from the first `rows` rows (None: all) of each of `paths`."""
    delimiter, quoting = options["field_delim"], options["use_quote_delim"]
    evidence = _Evidence(wanted)
    parse = pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if quoting else False,
                               newlines_in_values=True, invalid_row_handler=lambda row: "skip")
    convert = pacsv.ConvertOptions(include_columns=list(wanted), null_values=list(options["na_values"]),
                                   strings_can_be_null=True)
    for path in paths:
        compression = compression_of(path, options["compression_type"])
        start = read_header(path, delimiter, quoting, compression, options["encoding"])[1] if options["header"] else 0
        left = rows
        with BlockReader(path, compression, start, 1 << 18, delimiter, quoting) as blocks:
            while left is None or left > 0:
                block = blocks.next_block()
                if block is None:
                    break
                if block.bad is not None:
                    continue  # the reader reports (or skips) it when it gets there
                data = bytes(block.data)
                if left is not None:
                    data = data[: records_end(data, left, delimiter, quoting)]
                try:
                    # One pyarrow block, so its type inference sees every sampled row.
                    read = pacsv.ReadOptions(column_names=list(names), use_threads=False,
                                             encoding=options["encoding"], block_size=len(data) + 1)
                    table = pacsv.read_csv(pa.py_buffer(data), read, parse, convert)
                except (pa.ArrowInvalid, UnicodeDecodeError) as e:
                    line = blocks.line_of(block.offset)
                    raise DataFormatError(f"{path}:{line}: cannot infer column types: {e}; pass "
                                          "column_defaults", path, line) from None
                evidence.add(table)
                if left is not None:
                    left -= table.num_rows
    if evidence.rows == 0:
        raise DataFormatError(
            f"cannot infer column types: no data rows in {list(paths)}; pass column_defaults "
            "(one type or default per column), or start the file list with a file that has rows",
            paths[0] if paths else None)
    return evidence.columns()

def _check_encoding(encoding: str, delimiter: str) -> str:
    try:
        ascii_safe = all(ch.encode(encoding) == ch.encode("ascii") for ch in ('\n', '"', delimiter))
    except (LookupError, UnicodeError):
        raise ValueError(f"encoding {encoding!r} is not a known text encoding") from None
    if not ascii_safe:
        raise ValueError(f"encoding {encoding!r} is not supported: line ends, quotes and the "
                         "delimiter must be single ASCII bytes (utf-8, latin-1, cp1252, ... are)")
    return encoding


def resolve_spec(
    sample_paths: str | Sequence[str],
    column_names: Sequence[str] | None = None,
    column_defaults: Sequence[Any] | dict[str, Any] | None = None,
    select_columns: Sequence[str | int] | None = None,
    label_name: str | None = None,
    field_delim: str = ",",
    header: bool = False,
    on_error: str = "raise",
    block_size: int = 4 << 20,
    use_quote_delim: bool = True,
    na_value: str = "",
    compression_type: str | None = None,
    num_rows_for_inference: int | None = 100,
    encoding: str = "utf-8",
) -> CsvSpec:
    """Resolve names, types, defaults and selection into a `CsvSpec`.

    Reads the first of `sample_paths` when names come from its header, and the first
    `INFER_FILES` of them when types must be inferred.
    """
    paths = [str(sample_paths)] if isinstance(sample_paths, (str, bytes)) or hasattr(sample_paths, "__fspath__") \
        else [str(p) for p in sample_paths]
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if not isinstance(field_delim, str) or len(field_delim) != 1 or field_delim in ('"', "\n", "\r"):
        raise ValueError(f"field_delim must be one character (not a quote or line end), got {field_delim!r}")
    if int(block_size) < 1:
        raise ValueError(f"block_size must be >= 1 byte, got {block_size}")
    if num_rows_for_inference is not None and int(num_rows_for_inference) < 1:
        raise ValueError(f"num_rows_for_inference must be >= 1 or None (all rows), got {num_rows_for_inference}")
    compression_type = check_compression(compression_type)
    encoding = _check_encoding(str(encoding), field_delim)
    options = {"field_delim": field_delim, "use_quote_delim": bool(use_quote_delim),
               "na_values": tuple(dict.fromkeys(["", str(na_value)])), "compression_type": compression_type,
               "encoding": encoding, "header": bool(header)}
    from_header = column_names is None
    if from_header:
        if not header:
            raise ValueError("give column_names, or header=True to read them from the first line")
        column_names = read_header(paths[0], field_delim, bool(use_quote_delim), compression_type, encoding)[0]
    names = [str(n) for n in column_names]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate column names {dup} in {names}" + (f" (header of {paths[0]})" if from_header else ""))
    if select_columns is not None:
        bad_index = [c for c in select_columns if isinstance(c, int) and not 0 <= c < len(names)]
        if bad_index:
            raise ValueError(f"select_columns indices {bad_index} out of range for {len(names)} columns")
        selected = [names[c] if isinstance(c, int) else str(c) for c in select_columns]
        unknown = [c for c in selected if c not in names]
        if unknown:
            raise ValueError(f"select_columns {unknown} are not columns of the file ({names})")
    else:
        selected = names
    if label_name is not None and label_name not in selected:
        raise ValueError(f"label_name {label_name!r} is not among the selected columns {selected}")
    inferred_from = ""
    if column_defaults is None:
        sampled = paths[:INFER_FILES]
        columns = _infer(sampled, names, selected, options, num_rows_for_inference)
        rows = "all rows" if num_rows_for_inference is None else f"the first {num_rows_for_inference} rows"
        inferred_from = f"{rows} of {len(sampled)} file(s) ({sampled[0]}{', ...' if len(sampled) > 1 else ''})"
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
                   int(block_size), bool(use_quote_delim), options["na_values"], compression_type,
                   encoding, from_header and bool(header), inferred_from)
