"""CSV reading in bounded memory: byte blocks -> pyarrow -> columnar numpy chunks.

Each file is read in blocks of about `block_size` bytes cut at a line end, and every block is
parsed by `pyarrow.csv.read_csv` (multi-threaded, in C++) straight into typed columns: no
Python runs per row. The position is (file index, byte offset) of the next block, so
restoring seeks straight there: nothing consumed is read again. Line numbers are only needed
for error messages, so they are computed then (by counting line ends before the bad block).

Malformed rows (wrong number of fields, unparsable value, empty required value):
- `on_error="raise"` (default): `DataFormatError` naming file and line. The block is bisected
  with pyarrow on this error path only, so the line is exact at the cost of ~20 small parses.
- `on_error="skip"`: the rows are dropped, counted in `iterator.skipped_rows` and logged once
  per file.
Not supported: quoted fields containing line breaks, compressed files.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from input_pipelines._arrow import to_numpy
from input_pipelines.csv_columns import CsvSpec, resolve_spec
from input_pipelines.dataset import Dataset, _Context, _Iterator, _Stats
from input_pipelines.errors import DataFormatError, NoFilesMatchError, UnreadableFileError

logger = logging.getLogger("input_pipelines")


class _BadBlock(Exception):
    """A block failed to parse; the message is pyarrow's (or ours for missing values)."""


class _Parser:
    """Parses byte blocks of CSV into dicts of numpy arrays according to a `CsvSpec`."""

    def __init__(self, spec: CsvSpec) -> None:
        self.spec = spec
        self._read = pacsv.ReadOptions(column_names=list(spec.names), use_threads=True)
        self._strict = pacsv.ParseOptions(delimiter=spec.delimiter)
        self._convert = pacsv.ConvertOptions(
            column_types={c.name: c.arrow_type for c in spec.columns},
            include_columns=[c.name for c in spec.columns],
            null_values=[""],
            strings_can_be_null=True,
        )
        self._required = [c.name for c in spec.columns if c.default is None]

    def table(self, data: bytes | memoryview, on_invalid: Callable[[Any], str] | None = None) -> pa.Table:
        """Parse `data`; raises _BadBlock on any malformed row not handled by `on_invalid`."""
        parse = self._strict
        if on_invalid is not None:
            parse = pacsv.ParseOptions(delimiter=self.spec.delimiter, invalid_row_handler=on_invalid)
        try:
            return pacsv.read_csv(pa.py_buffer(data), self._read, parse, self._convert)
        except pa.ArrowInvalid as e:
            raise _BadBlock(str(e)) from None

    def check_required(self, table: pa.Table) -> None:
        """Raise _BadBlock if a required column has an empty value."""
        for name in self._required:
            if table.column(name).null_count:
                raise _BadBlock(f"empty value in required column {name!r} (no column default)")

    def arrays(self, table: pa.Table) -> Any:
        """Numpy arrays of the selected columns (defaults filled in), split off the label."""
        out = {}
        for c in self.spec.columns:
            col = table.column(c.name)
            if col.null_count and c.default is not None:
                col = pc.fill_null(col, pa.scalar(c.default, c.arrow_type))
            out[c.name] = to_numpy(col)
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


def _describe(message: str, names: Sequence[str]) -> str:
    m = re.search(r"In CSV column #(\d+): CSV conversion error to (\w+): invalid value '(.*)'", message)
    if m:
        name = names[int(m.group(1))]
        return f"cannot parse {m.group(3)!r} as {m.group(2)} in column {name!r}"
    m = re.search(r"Expected (\d+) columns, got (\d+)", message)
    if m:
        return f"wrong number of fields: expected {m.group(1)}, got {m.group(2)}"
    return message.splitlines()[0]


def _first_bad_line(parser: _Parser, lines: list[bytes]) -> int:
    """Index of the first line whose prefix fails to parse (binary search over prefixes)."""
    lo, hi = 1, len(lines)  # invariant: lines[:hi] fails
    while lo < hi:
        mid = (lo + hi) // 2
        if parser.fails(b"\n".join(lines[:mid]) + b"\n") is None:
            lo = mid + 1
        else:
            hi = mid
    return hi - 1


def _bad_lines(parser: _Parser, lines: list[bytes], lo: int, hi: int) -> list[int]:
    """Indices in [lo, hi) of all lines that fail to parse (recursive bisection)."""
    if lo >= hi or parser.fails(b"\n".join(lines[lo:hi]) + b"\n") is None:
        return []
    if hi - lo == 1:
        return [lo]
    mid = (lo + hi) // 2
    return _bad_lines(parser, lines, lo, mid) + _bad_lines(parser, lines, mid, hi)


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
        infers types from the first file.
      select_columns: names (or indices) of the columns to keep; others are not converted.
      label_name: a selected column returned separately as the label.
      field_delim: the field delimiter.
      header: whether each file's first line is a header (skipped).
      on_error: "raise" (error naming file and line) or "skip" (skip, count and log).
      block_size: bytes parsed at a time; memory use is a few times this per open file.
    """

    def __init__(
        self,
        filenames: str | Sequence[str],
        column_names: Sequence[str] | None = None,
        column_defaults: Sequence[Any] | dict[str, Any] | None = None,
        select_columns: Sequence[str] | None = None,
        label_name: str | None = None,
        field_delim: str = ",",
        header: bool = False,
        on_error: str = "raise",
        block_size: int = 4 << 20,
        spec: CsvSpec | None = None,
    ) -> None:
        single = isinstance(filenames, str) or hasattr(filenames, "__fspath__")  # str or pathlib.Path
        files = [str(filenames)] if single else [str(f) for f in filenames]
        if not files:
            raise NoFilesMatchError("CsvDataset got an empty list of files")
        if spec is None:
            spec = resolve_spec(files[0], column_names, column_defaults, select_columns, label_name,
                                field_delim, header, on_error, block_size)
        super().__init__(f"csv({len(spec.columns)},{spec.label},{len(files)})")
        self._files, self._spec = files, spec

    @property
    def spec(self) -> CsvSpec:
        """The resolved column specification."""
        return self._spec

    def _iterator(self, ctx: _Context) -> _Iterator:
        return _CsvIterator(self._files, _Parser(self._spec), ctx.stats)


def csv_reader(
    column_names: Sequence[str] | None = None,
    column_defaults: Sequence[Any] | dict[str, Any] | None = None,
    select_columns: Sequence[str] | None = None,
    label_name: str | None = None,
    field_delim: str = ",",
    header: bool = False,
    on_error: str = "raise",
    block_size: int = 4 << 20,
    sample_file: str | None = None,
) -> Callable[[str], Dataset]:
    """A reader `path -> CsvDataset` for `interleave`, with the column spec resolved once.

    The spec (header names, inferred types) is resolved from `sample_file`, or from the first
    file the reader is called with, and then shared by all files. Without `column_defaults`,
    pass `sample_file` so inferred types do not depend on which file is opened first (e.g.
    after a restore).
    """
    options = (column_names, column_defaults, select_columns, label_name, field_delim, header,
               on_error, block_size)
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
        self._fh: BinaryIO | None = None
        self._skipped_in_file = 0

    def _open(self) -> BinaryIO:
        path = self._files[self._index]
        try:
            fh = open(path, "rb")  # noqa: SIM115 - kept open across next() calls
            if self._offset == 0:
                if self._parser.spec.header:
                    self._offset = len(fh.readline())
            else:
                fh.seek(self._offset)
        except OSError as e:
            raise UnreadableFileError(f"cannot read CSV file {path!r}: {e}; check it exists and is readable") from e
        return fh

    def _read_block(self, fh: BinaryIO) -> memoryview:
        size = self._parser.spec.block_size
        try:
            data = fh.read(size)
            if len(data) < size:
                return memoryview(data)  # end of file: the rest, even without a final newline
            cut = data.rfind(b"\n")
            while cut < 0:  # a line longer than the block: extend until a line end
                more = fh.read(size)
                if not more:
                    return memoryview(data)
                cut = more.rfind(b"\n")
                cut = cut if cut < 0 else len(data) + cut
                data += more
        except OSError as e:
            raise UnreadableFileError(f"error reading {self._files[self._index]!r}: {e}") from e
        if cut + 1 < len(data):
            fh.seek(self._offset + cut + 1)
        return memoryview(data)[: cut + 1]  # no copy

    def _end_file(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._skipped_in_file:
            logger.warning("%s: skipped %d malformed rows (on_error='skip')",
                           self._files[self._index], self._skipped_in_file)
        self._skipped_in_file = 0
        self._index, self._offset = self._index + 1, 0

    def next(self) -> Any:
        while self._index < len(self._files):
            if self._fh is None:
                self._fh = self._open()
            data = self._read_block(self._fh)
            if not data:
                self._end_file()
                continue
            start = self._offset
            self._offset += len(data)
            table = self._parse(data, start)
            if table.num_rows:
                return self._parser.arrays(table)
        raise StopIteration

    def _first_line(self, offset: int) -> int:
        """1-based line number of the line starting at byte `offset` (error path only)."""
        line, done = 1, 0
        with open(self._files[self._index], "rb") as f:
            while done < offset:
                block = f.read(min(1 << 24, offset - done))
                if not block:
                    break
                line += block.count(b"\n")
                done += len(block)
        return line

    def _parse(self, data: memoryview, offset: int) -> pa.Table:
        parser, path = self._parser, self._files[self._index]
        skip = parser.spec.on_error == "skip"
        counter = _SkipCounter() if skip else None
        try:
            table = parser.table(data, counter)
            if not skip:
                parser.check_required(table)
                return table
        except _BadBlock:
            lines = bytes(data).split(b"\n")
            if not skip:
                i = _first_bad_line(parser, lines)
                reason = _describe(parser.fails(lines[i] + b"\n") or "malformed row", parser.spec.names)
                line = self._first_line(offset) + i
                raise DataFormatError(
                    f"{path}:{line}: {reason}; line: {lines[i][:200].decode(errors='replace')!r}. "
                    "Fix or remove the line, or pass on_error='skip' to skip and count bad rows",
                    path, line,
                ) from None
            bad = set(_bad_lines(parser, lines, 0, len(lines)))
            if logger.isEnabledFor(logging.DEBUG):
                first = self._first_line(offset)
                logger.debug("%s: skipping malformed lines %s", path, sorted(first + i for i in bad)[:20])
            good = b"\n".join(x for i, x in enumerate(lines) if i not in bad) + b"\n"
            self._count_skipped(len(bad))
            return parser.table(good)
        valid = None
        for name in parser._required:
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
        if self._fh is not None:
            self._fh.close()
            self._fh = None

