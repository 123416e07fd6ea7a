"""CSV reading in bounded memory: byte blocks -> pyarrow -> columnar numpy chunks.

Each file is read in blocks of about `block_size` bytes that end exactly at a record end (a
line end outside quoted values; see `_csv_records`), and every block is parsed by
`pyarrow.csv.read_csv` (in C++; multi-threaded unless the file is one of several parsed by parallel readers) straight into typed columns: no Python runs per
row. The position is (file index, byte offset) of the next block, so restoring seeks straight
there: nothing consumed is read again. Line numbers are only needed for error messages, so they
are computed then (by counting line ends before the bad block).

Quoting follows RFC 4180 (as tf.data): quoted values may hold delimiters, doubled quotes and
line breaks; a quote elsewhere, text after a closing quote or a quote that never closes is a
malformed record. `use_quote_delim=False` reads quotes as ordinary characters.

Compressed files (`compression_type` "GZIP" / "ZLIB", or None: GZIP for names ending in
".gz") are decompressed as a stream, in bounded memory. Offsets count uncompressed bytes; a
restore into the middle of a compressed file decompresses it again from its start up to the
offset (exact, but it costs the time to read that part again).

Malformed records (wrong number of fields, unparsable value, empty required value, broken
quoting, a header that does not match the dataset's columns):
- `on_error="raise"` (default): `DataFormatError` naming file and line. The block is bisected
  with pyarrow on this error path only, so the line is exact at the cost of ~20 small parses.
- `on_error="skip"`: the records are dropped, counted in `iterator.skipped_rows` and logged
  once per file (a mismatched header is always an error).
Blank lines hold no record and are passed over (as pandas does; tf.data counts them as errors).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from input_pipelines._arrow import _NUMERIC, to_numpy
from input_pipelines._base import _Context, _Iterator, _Stats
from input_pipelines._csv_records import Block, BlockReader, compression_of, record_starts
from input_pipelines._narrow import float64_values, narrow, rounds_twice, wide_type
from input_pipelines.csv_columns import CsvSpec, check_header, read_header, resolve_spec
from input_pipelines.dataset import Dataset
from input_pipelines.errors import DataFormatError, NoFilesMatchError

logger = logging.getLogger("input_pipelines")


class _BadBlock(Exception):
    """A block failed to parse; the message is pyarrow's (or ours for missing values)."""


class _Parser:
    """Parses byte blocks of CSV into dicts of numpy arrays according to a `CsvSpec`."""

    def __init__(self, spec: CsvSpec, use_threads: bool = True) -> None:
        self.spec, self._threads = spec, use_threads
        self._read = pacsv.ReadOptions(column_names=list(spec.names), use_threads=use_threads,
                                       encoding=spec.encoding)
        self._direct = self._convert_options({c.name: c.arrow_type for c in spec.columns})
        self._convert = self._convert_options({c.name: wide_type(c.arrow_type) for c in spec.columns})
        self._narrowed = [c.name for c in spec.columns if wide_type(c.arrow_type) != c.arrow_type]
        self.required = [c.name for c in spec.columns if c.default is None]

    def _convert_options(self, types: dict[str, pa.DataType]) -> pacsv.ConvertOptions:
        return pacsv.ConvertOptions(column_types=types, include_columns=list(types),
                                    null_values=list(self.spec.na_values), strings_can_be_null=True)

    def _parse_options(self, quoted: bool, on_invalid: Callable[[Any], str] | None) -> pacsv.ParseOptions:
        # Quoted line breaks need pyarrow's slower quote-aware chunking; only blocks with quotes.
        quoted = self.spec.quoting and quoted
        return pacsv.ParseOptions(delimiter=self.spec.delimiter, quote_char='"' if self.spec.quoting else False,
                                  newlines_in_values=quoted, invalid_row_handler=on_invalid)

    def table(self, data: bytes | memoryview, on_invalid: _SkipCounter | None = None,
              quoted: bool | None = None) -> pa.Table:
        """Parse `data`; raises _BadBlock on any malformed row not handled by `on_invalid`.

        `quoted`: whether `data` may hold quotes (None: look). float32 columns come back as
        float64 (`arrays` narrows them) unless narrowing could round differently (`_narrow`).
        """
        if quoted is None:
            quoted = bytes(data).find(b'"') >= 0
        parse = self._parse_options(quoted, on_invalid)
        table = self._read_table(data, parse, self._convert)
        if any(rounds_twice(float64_values(chunk)) for name in self._narrowed
               for chunk in table.column(name).chunks):
            recount = self._parse_options(quoted, None if on_invalid is None else _SkipCounter())
            table = self._read_table(data, recount, self._direct)  # rows skipped again: counted once
        return table

    def _read_table(self, data: bytes | memoryview, parse: pacsv.ParseOptions,
                    convert: pacsv.ConvertOptions) -> pa.Table:
        try:
            try:
                return pacsv.read_csv(pa.py_buffer(data), self._read, parse, convert)
            except pa.ArrowInvalid as e:
                if "straddl" not in str(e):
                    raise
                # A record longer than pyarrow's own block (1 MiB): parse the block in one piece.
                read = pacsv.ReadOptions(column_names=list(self.spec.names), use_threads=self._threads,
                                         encoding=self.spec.encoding, block_size=len(data) + 1)
                return pacsv.read_csv(pa.py_buffer(data), read, parse, convert)
        except (pa.ArrowInvalid, UnicodeDecodeError) as e:
            raise _BadBlock(str(e)) from None

    def check_required(self, table: pa.Table) -> None:
        """Raise _BadBlock if a required column has an empty value."""
        for name in self.required:
            if table.column(name).null_count:
                raise _BadBlock(f"empty value in required column {name!r} (no column default)")

    def arrays(self, table: pa.Table) -> Any:
        """Numpy arrays of the selected columns (defaults filled in), split off the label."""
        out = {c.name: _to_numpy(table.column(c.name), c.default) for c in self.spec.columns}
        for name in self._narrowed:
            if out[name].dtype == np.float64:
                out[name] = narrow(out[name])
        if self.spec.label is None:
            return out
        label = out.pop(self.spec.label)
        return out, label

    def fails(self, data: bytes) -> str | None:
        """pyarrow's complaint about `data`, or None if it parses cleanly."""
        try:
            self.check_required(self.table(data))
        except _BadBlock as e:
            return str(e)
        return None

    def describe(self, message: str) -> str:
        """A user-facing reason from pyarrow's message (with a hint for inferred types)."""
        names, spec = self.spec.names, self.spec
        m = re.search(r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to (\w+): invalid value '(.*)'", message)
        if m:
            name = names[int(m.group(1))]
            column = next((c for c in spec.columns if c.name == name), None)
            type_name = m.group(2) if column is None else column.arrow_type  # float32 parses as double
            reason = f"cannot parse {m.group(3)!r} as {type_name} in column {name!r}"
            if column is not None and column.inferred:
                reason += (f" (its type was inferred from {spec.inferred_from}; pass column_defaults, "
                           f"e.g. column_defaults={{{name!r}: str}} or np.int64 / float, to set it)")
            return reason
        m = re.search(r"Expected (\d+) columns, got (\d+)", message)
        if m:
            return f"wrong number of fields: expected {m.group(1)}, got {m.group(2)}"
        return message.splitlines()[0]


def _bits(buffer: pa.Buffer | None, offset: int, n: int) -> np.ndarray | None:
    """An arrow bitmap (validity or booleans) as numpy bools; None for a missing bitmap."""
    if buffer is None:
        return None
    bits = np.unpackbits(np.frombuffer(buffer, np.uint8), bitorder="little")
    return bits[offset: offset + n].astype(bool)


def _to_numpy(column: pa.ChunkedArray, default: Any) -> np.ndarray:
    """A column as numpy with missing values set to `default` (required columns have none).

    Only numpy and buffer views here: pyarrow's conversions of strings, booleans and nulls
    (and of any Python value to arrow) import pandas, a second of start-up in every process.
    """
    col = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if col.null_count == 0 and col.type in _NUMERIC:
        return to_numpy(col)  # zero copy
    n = len(col)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        values = np.fromiter(col.to_pylist(), dtype=object, count=n)
    elif pa.types.is_boolean(col.type):
        values = _bits(col.buffers()[1], col.offset, n)
    elif col.type in _NUMERIC:
        dtype = _NUMERIC[col.type]
        values = np.frombuffer(col.buffers()[1], dtype, count=n, offset=col.offset * dtype.itemsize).copy()
    else:  # no column type given and no value seen: cannot happen with a resolved spec
        return to_numpy(col)
    if col.null_count:
        values[~_bits(col.buffers()[0], col.offset, n)] = default
    return values


def _first_bad(parser: _Parser, records: list[bytes]) -> int:
    """Index of the first record whose prefix fails to parse (binary search over prefixes)."""
    lo, hi = 1, len(records)  # invariant: records[:hi] fails
    while lo < hi:
        mid = (lo + hi) // 2
        if parser.fails(b"".join(records[:mid])) is None:
            lo = mid + 1
        else:
            hi = mid
    return hi - 1


def _bad_records(parser: _Parser, records: list[bytes], lo: int, hi: int) -> list[int]:
    """Indices in [lo, hi) of all records that fail to parse (recursive bisection)."""
    if lo >= hi or parser.fails(b"".join(records[lo:hi])) is None:
        return []
    if hi - lo == 1:
        return [lo]
    mid = (lo + hi) // 2
    return _bad_records(parser, records, lo, mid) + _bad_records(parser, records, mid, hi)


def _split_records(data: bytes, spec: CsvSpec) -> list[bytes]:
    """The records of a block, each with its line end (the last one always gets one)."""
    starts = record_starts(data, spec.delimiter, spec.quoting)
    records = [data[a:b] for a, b in zip(starts, [*starts[1:], len(data)], strict=True)]
    if records and not records[-1].endswith(b"\n"):
        records[-1] += b"\n"
    return records


class _SkipCounter:
    """invalid_row_handler for on_error='skip': counts and skips rows with a wrong field count."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, row: Any) -> str:
        self.count += 1
        return "skip"


class CsvDataset(Dataset):
    """Rows of one or more CSV files, read in order, as columnar chunks.

    Elements are dicts `{column: value}` (or `(features, label)` with `label_name`). For many
    files use `Dataset.list_files(...).interleave(csv_reader(...))` or `make_csv_dataset`.

    Args:
      filenames: a path or a list of paths.
      column_names: names of all columns in the file; None reads them from the header.
      column_defaults: defaults/types per column (see `input_pipelines.csv_columns`); None
        infers types from the first files.
      select_columns: names (or indices) of the columns to keep; others are not converted.
      label_name: a selected column returned separately as the label.
      field_delim: the field delimiter.
      header: whether each file's first line is a header (checked against the columns, skipped).
      on_error: "raise" (error naming file and line) or "skip" (skip, count and log).
      block_size: bytes parsed at a time; memory use is a few times this per open file.
      use_quote_delim: RFC 4180 double quotes (False: quotes are ordinary characters).
      na_value: a field value that, like an empty field, takes the column default.
      compression_type: "", "GZIP", "ZLIB", or None (GZIP for names ending in ".gz").
      num_rows_for_inference: rows of each sampled file used to infer types (None: all).
      encoding: text encoding (ASCII-compatible, e.g. utf-8, latin-1).
      spec: a resolved `CsvSpec` (then the column arguments above are ignored).
    """

    def __init__(
        self,
        filenames: str | Sequence[str],
        column_names: Sequence[str] | None = None,
        column_defaults: Sequence[Any] | dict[str, Any] | None = None,
        select_columns: Sequence[str | int] | None = None,
        label_name: str | None = None,
        field_delim: str = ",",
        header: bool = False,
        on_error: str = "raise",
        block_size: int = 4 << 20,
        spec: CsvSpec | None = None,
        use_quote_delim: bool = True,
        na_value: str = "",
        compression_type: str | None = None,
        num_rows_for_inference: int | None = 100,
        encoding: str = "utf-8",
    ) -> None:
        single = isinstance(filenames, (str, bytes)) or hasattr(filenames, "__fspath__")
        files = [str(filenames)] if single else [str(f) for f in filenames]
        if not files:
            raise NoFilesMatchError("CsvDataset got an empty list of files")
        if spec is None:
            spec = resolve_spec(files, column_names, column_defaults, select_columns, label_name,
                                field_delim, header, on_error, block_size, use_quote_delim, na_value,
                                compression_type, num_rows_for_inference, encoding)
        super().__init__(f"csv({len(spec.columns)},{spec.label},{len(files)})")
        self._files, self._spec = files, spec

    @property
    def spec(self) -> CsvSpec:
        """The resolved column specification."""
        return self._spec

    def _iterator(self, ctx: _Context) -> _Iterator:
        # pyarrow's threads pay only where nothing else parses in parallel (a single reader)
        return _CsvIterator(self._files, _Parser(self._spec, use_threads=not ctx.in_parallel), ctx.stats)


def csv_reader(
    column_names: Sequence[str] | None = None,
    column_defaults: Sequence[Any] | dict[str, Any] | None = None,
    select_columns: Sequence[str | int] | None = None,
    label_name: str | None = None,
    field_delim: str = ",",
    header: bool = False,
    on_error: str = "raise",
    block_size: int = 4 << 20,
    sample_file: str | Sequence[str] | None = None,
    use_quote_delim: bool = True,
    na_value: str = "",
    compression_type: str | None = None,
    num_rows_for_inference: int | None = 100,
    encoding: str = "utf-8",
) -> Callable[[str], Dataset]:
    """A reader `path -> CsvDataset` for `interleave`, with the column spec resolved once.

    The spec (header names, inferred types) is resolved from `sample_file` (a path, or a list
    whose first files are sampled), or from the first file the reader is called with, and then
    shared by all files. Without `column_defaults`, pass `sample_file` so inferred types do not
    depend on which file is opened first (e.g. after a restore). Other arguments: `CsvDataset`.
    """
    options = (column_names, column_defaults, select_columns, label_name, field_delim, header,
               on_error, block_size, use_quote_delim, na_value, compression_type,
               num_rows_for_inference, encoding)
    resolved: list[CsvSpec] = []
    if sample_file is not None:
        resolved.append(resolve_spec(sample_file, *options))

    def read_csv_file(path: str) -> Dataset:
        if not resolved:
            resolved.append(resolve_spec(path, *options))
        return CsvDataset(path, spec=resolved[0])

    return read_csv_file


class _CsvIterator(_Iterator):
    def __init__(self, files: list[str], parser: _Parser, stats: _Stats) -> None:
        self._files, self._parser, self._stats = files, parser, stats
        self._index, self._offset = 0, 0
        self._blocks: BlockReader | None = None
        self._skipped_in_file = 0

    @property
    def _path(self) -> str:
        return self._files[self._index]

    def _open(self) -> BlockReader:
        spec, path = self._parser.spec, self._path
        compression = compression_of(path, spec.compression)
        if self._offset == 0 and spec.header:
            found, size = read_header(path, spec.delimiter, spec.quoting, spec.compression, spec.encoding)
            check_header(path, found, spec)
            self._offset = size
        return BlockReader(path, compression, self._offset, spec.block_size, spec.delimiter, spec.quoting)

    def _end_file(self) -> None:
        self.close()
        if self._skipped_in_file:
            logger.warning("%s: skipped %d malformed rows (on_error='skip')", self._path, self._skipped_in_file)
        self._skipped_in_file = 0
        self._index, self._offset = self._index + 1, 0

    def next(self) -> Any:
        while self._index < len(self._files):
            if self._blocks is None:
                self._blocks = self._open()
            block = self._blocks.next_block()
            if block is None:
                self._end_file()
                continue
            self._offset = self._blocks.offset
            table = self._bad_quoting(block) if block.bad is not None else self._parse(block)
            self._blocks.done()  # the parsed table holds no reference to the block
            if table is not None and table.num_rows:
                return self._parser.arrays(table)
        raise StopIteration

    def _error(self, block: Block, pos: int, reason: str, text: bytes) -> DataFormatError:
        line = self._blocks.line_of(block.offset) + bytes(block.data).count(b"\n", 0, pos)
        shown = text[:200].decode(self._parser.spec.encoding, errors="replace")
        return DataFormatError(
            f"{self._path}:{line}: {reason}; line: {shown!r}. Fix or remove the line, or pass "
            "on_error='skip' (make_csv_dataset: ignore_errors=True) to skip and count bad rows",
            self._path, line)

    def _bad_quoting(self, block: Block) -> None:
        pos, reason = block.bad
        if self._parser.spec.on_error != "skip":
            data = bytes(block.data)
            start = data.rfind(b"\n", 0, pos) + 1
            raise self._error(block, pos, reason, data[start:].rstrip(b"\r\n"))
        self._count_skipped(1)
        return None

    def _parse(self, block: Block) -> pa.Table:
        parser, data = self._parser, block.data
        skip = parser.spec.on_error == "skip"
        counter = _SkipCounter() if skip else None
        try:
            table = parser.table(data, counter, block.quoted)
            if not skip:
                parser.check_required(table)
                return table
        except _BadBlock:
            records = _split_records(bytes(data), parser.spec)
            if not skip:
                i = _first_bad(parser, records)
                reason = parser.describe(parser.fails(records[i]) or "malformed row")
                pos = sum(len(r) for r in records[:i])
                raise self._error(block, pos, reason, records[i].rstrip(b"\r\n")) from None
            bad = set(_bad_records(parser, records, 0, len(records)))
            if logger.isEnabledFor(logging.DEBUG):
                first = self._blocks.line_of(block.offset)
                lines = [first + sum(r.count(b"\n") for r in records[:i]) for i in sorted(bad)[:20]]
                logger.debug("%s: skipping malformed records at lines %s", self._path, lines)
            self._count_skipped(len(bad))
            good = b"".join(r for i, r in enumerate(records) if i not in bad)
            try:
                return parser.table(good) if good else None
            except _BadBlock as e:  # each record parses alone but not together: never expected
                raise self._error(block, 0, parser.describe(str(e)), records[0].rstrip(b"\r\n")) from None
        valid = None
        for name in parser.required:
            col = table.column(name)
            if col.null_count:
                mask = pc.is_valid(col)
                valid = mask if valid is None else pc.and_(valid, mask)
        self._count_skipped(counter.count)
        if valid is not None:
            self._count_skipped(table.num_rows - int(pc.sum(valid).as_py() or 0))
            table = table.filter(valid)
        return table

    def _count_skipped(self, n: int) -> None:
        if n:
            self._skipped_in_file += n
            self._stats.add_skipped(n)

    def state(self) -> dict[str, Any]:
        return {"file": self._index, "offset": self._offset}

    def restore(self, state: dict[str, Any]) -> None:
        self.close()
        self._index, self._offset = int(state["file"]), int(state["offset"])
        self._skipped_in_file = 0

    def close(self) -> None:
        if self._blocks is not None:
            self._blocks.close()
            self._blocks = None
