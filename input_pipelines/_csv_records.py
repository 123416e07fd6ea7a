"""Where CSV records end: RFC 4180 quoting, compressed files, header records.

Blocks handed to pyarrow must end exactly at a record end, or pyarrow either fails or (worse)
accepts a quoted value cut at the end of the buffer and silently drops the rows after it. A
newline ends a record iff an even number of quote characters precede it in the block (blocks
start at record starts). That holds for RFC 4180 quoting, which tf.data enforces too: a quote
opens a value only at its start, closes it only before a delimiter, a line end or the end of
the file, and is doubled inside a quoted value. `scan` checks those rules for every quote (in
numpy, only for blocks that contain one) and reports the first record that breaks them.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import threading
import zlib
from typing import BinaryIO

import numpy as np

from input_pipelines import fs
from input_pipelines.errors import UnreadableFileError

#: A record (line, or quoted value spanning lines) longer than this is an error, so one
#: unterminated quote cannot make a reader hold the rest of a large file in memory.
MAX_RECORD_BYTES = 64 << 20

_QUOTE, _LF, _CR = ord('"'), ord("\n"), ord("\r")
COMPRESSIONS = ("", "GZIP", "ZLIB")


def compression_of(path: str, compression_type: str | None) -> str:
    """The compression of `path`: `compression_type`, or from the name (".gz") when None."""
    if compression_type is None:
        return "GZIP" if str(path).endswith(".gz") else ""
    return compression_type


def check_compression(compression_type: str | None) -> str | None:
    """`compression_type` normalised (None, "", "GZIP" or "ZLIB"); ValueError otherwise."""
    if compression_type is None:
        return None
    value = str(compression_type).upper()
    if value not in COMPRESSIONS:
        raise ValueError(f"compression_type must be None (detect from a .gz name), '', 'GZIP' or "
                         f"'ZLIB', got {compression_type!r}")
    return value


class _ZlibReader(io.RawIOBase):
    """Streaming reader of a zlib-wrapped (RFC 1950) file, TF's "ZLIB" compression type."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw, self._z, self._buf = raw, zlib.decompressobj(), b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # noqa: ANN001 - io protocol
        while not self._buf and not self._z.eof:
            chunk = self._raw.read(1 << 16)
            if not chunk:
                raise EOFError("compressed file ended before the end-of-stream marker")
            self._buf = self._z.decompress(chunk)
        n = min(len(b), len(self._buf))
        b[:n], self._buf = self._buf[:n], self._buf[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_csv(path: str, compression: str, offset: int = 0, url_buffer: int | None = None) -> BinaryIO:
    """`path` opened for reading its uncompressed bytes from `offset`.

    Compressed streams cannot jump: seeking decompresses (and drops) the bytes before `offset`,
    which costs time, not memory. A URL (gs://, s3://) is read with ranged requests, so an
    uncompressed file opened at `offset` downloads from there; a read smaller than
    `url_buffer` bytes fetches that many (`fs.open`).
    """
    try:
        raw = fs.open(path, "rb", url_buffer=url_buffer)  # noqa: SIM115 - the caller closes it
        if compression == "GZIP":
            fh: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb")
            fh.myfileobj = raw  # close the file with the stream
        elif compression == "ZLIB":
            fh = io.BufferedReader(_ZlibReader(raw), 1 << 20)
        else:
            fh = raw
        if offset:
            _skip(fh, offset, compression)
    except (OSError, EOFError, zlib.error) as e:
        raise UnreadableFileError(f"cannot read CSV file {path!r}: {e}; check it exists, is "
                                  "readable and that compression_type matches it") from e
    return fh


def _skip(fh: BinaryIO, offset: int, compression: str) -> None:
    if compression == "":
        fh.seek(offset)
        return
    left = offset
    while left:
        got = len(fh.read(min(left, 1 << 22)))
        if not got:
            raise EOFError(f"the stream ends before offset {offset}")
        left -= got


@dataclasses.dataclass(frozen=True)
class Scan:
    """Result of `scan`: `end` is where the complete records of the block end (0: none yet).

    When the first record of the block breaks the quoting rules (or never ends), `bad` is
    `(position of the offending quote, end of the bad record's physical line, reason)`.
    """

    end: int
    bad: tuple[int, int, str] | None = None
    quoted: bool = True  # the data holds a quote character (pyarrow must then mind quoted line ends)


def scan(data: bytes | bytearray, delimiter: str, quoting: bool, at_eof: bool, truncated: bool = False,
         size: int | None = None) -> Scan:
    """Find the end of the last complete record in `data[:size]` (which starts at a record start).

    `at_eof`: no more bytes follow, so a final record without a line end is complete.
    `truncated`: more bytes follow but the record may not grow further (MAX_RECORD_BYTES).
    """
    n = len(data) if size is None else size
    if not quoting or data.find(b'"', 0, n) < 0:
        cut = data.rfind(b"\n", 0, n) + 1
        if at_eof:
            return Scan(n, quoted=False)
        if cut == 0 and truncated:
            return Scan(0, (0, n, f"a line longer than {MAX_RECORD_BYTES >> 20} MiB"), False)
        return Scan(cut, quoted=False)
    arr = np.frombuffer(data, np.uint8, count=n)
    q = np.flatnonzero(arr == _QUOTE)
    bad = _first_violation(arr, q, ord(delimiter), at_eof and not truncated)
    nl = np.flatnonzero(arr == _LF)
    ends = nl[(np.searchsorted(q, nl) & 1) == 0]  # newlines outside quoted values
    if bad is not None:
        pos, reason = bad
        before = ends[ends < pos]
        if len(before):
            return Scan(int(before[-1]) + 1)
        return Scan(0, (pos, _line_end(data, pos, n), reason))
    cut = int(ends[-1]) + 1 if len(ends) else 0
    odd = len(q) % 2 == 1
    complete = at_eof and not truncated
    if complete and not odd:
        return Scan(n)
    if cut or not (complete or truncated):
        return Scan(cut)  # a bad last record is reported when the next block starts with it
    pos = _opening_quote(arr, q) if odd else 0
    why = ("a quoted value that never closes (unbalanced '\"')" if complete else
           f"a quoted value or line longer than {MAX_RECORD_BYTES >> 20} MiB (unbalanced '\"'?)")
    return Scan(0, (pos, _line_end(data, pos, n), why))


def _first_violation(arr: np.ndarray, q: np.ndarray, delim: int, at_eof: bool) -> tuple[int, str] | None:
    """Position and reason of the first quote breaking RFC 4180 (assuming quote parity)."""
    n = len(arr)
    prev = np.where(q > 0, arr[np.maximum(q - 1, 0)], _LF)
    after = np.where(q + 1 < n, arr[np.minimum(q + 1, n - 1)], _LF if at_eof else _QUOTE)
    opening = (np.arange(len(q)) & 1) == 0
    field_start = (prev == delim) | (prev == _LF) | (prev == _CR) | (prev == _QUOTE)
    field_end = (after == delim) | (after == _LF) | (after == _CR) | (after == _QUOTE)
    wrong = np.flatnonzero(np.where(opening, ~field_start, ~field_end))
    if not len(wrong):
        return None
    i = int(wrong[0])
    if opening[i]:
        return int(q[i]), "a '\"' inside an unquoted value (quote the value and double the '\"', or pass use_quote_delim=False)"
    return int(q[i]), "text after the closing '\"' of a quoted value (double a '\"' inside quotes)"


def _opening_quote(arr: np.ndarray, q: np.ndarray) -> int:
    """Position of the quote that opened the last (unclosed) quoted value."""
    opening = q[0::2]
    prev = arr[np.maximum(opening - 1, 0)]
    real = opening[(opening == 0) | (prev != _QUOTE)]
    return int(real[-1]) if len(real) else int(q[-1])


def _line_end(data: bytes | bytearray, pos: int, size: int) -> int:
    """End (exclusive, after the newline) of the physical line holding byte `pos` (< `size`)."""
    nl = data.find(b"\n", pos, size)
    return size if nl < 0 else nl + 1


def record_starts(data: bytes, delimiter: str, quoting: bool) -> list[int]:
    """Start offsets of the records in `data` (a block of complete records; error path only)."""
    if not quoting or data.find(b'"') < 0:
        starts = [0]
        pos = data.find(b"\n")
        while 0 <= pos < len(data) - 1:
            starts.append(pos + 1)
            pos = data.find(b"\n", pos + 1)
        return starts
    arr = np.frombuffer(data, np.uint8)
    q = np.flatnonzero(arr == _QUOTE)
    nl = np.flatnonzero(arr == _LF)
    ends = nl[(np.searchsorted(q, nl) & 1) == 0]
    return [0, *(int(e) + 1 for e in ends if e + 1 < len(data))]


def records_end(data: bytes, n: int, delimiter: str, quoting: bool) -> int:
    """End of the first `n` records of a block of complete records (all of it if fewer)."""
    if not quoting or data.find(b'"') < 0:
        pos = -1
        for _ in range(n):
            pos = data.find(b"\n", pos + 1)
            if pos < 0:
                return len(data)
        return pos + 1
    arr = np.frombuffer(data, np.uint8)
    q = np.flatnonzero(arr == _QUOTE)
    nl = np.flatnonzero(arr == _LF)
    ends = nl[(np.searchsorted(q, nl) & 1) == 0]
    return int(ends[n - 1]) + 1 if len(ends) >= n else len(data)


def read_header_record(fh: BinaryIO, quoting: bool) -> bytes:
    """The first record of `fh` (a header line; a quoted name may span lines), with its line end."""
    record = fh.readline(MAX_RECORD_BYTES)
    while quoting and record.count(b'"') % 2 and len(record) < MAX_RECORD_BYTES:
        more = fh.readline(MAX_RECORD_BYTES)
        if not more:
            break
        record += more
    return record


@dataclasses.dataclass(frozen=True)
class Block:
    """Complete records `data` starting at uncompressed byte `offset` of the file.

    With `bad` set, `data` is one record breaking the quoting rules (up to the end of the line
    where the problem is) and `bad` is `(position of the problem in data, reason)`.
    """

    offset: int
    data: bytes | memoryview
    bad: tuple[int, str] | None = None
    quoted: bool = True  # it may hold quote characters


_FREE_BUFFERS: list[bytearray] = []  # read buffers no reader holds, for the next block read
_FREE_LOCK = threading.Lock()
_FREE_MAX = max(4, os.cpu_count() or 1)  # about one per thread parsing at once


def _buffer(size: int) -> bytearray:
    """A read buffer of at least `size` bytes: a released one, else a new one (the page
    faults of a fresh 4 MiB buffer per block cost ~4x the read itself)."""
    with _FREE_LOCK:
        for i, buf in enumerate(_FREE_BUFFERS):
            if len(buf) >= size:
                return _FREE_BUFFERS.pop(i)
    return bytearray(size)


def _release(buf: bytearray) -> None:
    with _FREE_LOCK:
        if len(_FREE_BUFFERS) < _FREE_MAX and len(buf) <= 4 * MAX_RECORD_BYTES:
            _FREE_BUFFERS.append(buf)


def _read_into(fh: BinaryIO, view: memoryview) -> int:
    """Bytes read into `view` (0 at the end of the stream); fewer than asked is no end."""
    readinto = getattr(fh, "readinto", None)
    if readinto is not None:
        return readinto(view) or 0
    data = fh.read(len(view))
    view[:len(data)] = data
    return len(data)


class BlockReader:
    """Reads a CSV file as blocks of about `block_size` bytes that end at record ends.

    Blocks are views of a read buffer: a block is valid until the next call or `done()`.
    """

    def __init__(self, path: str, compression: str, offset: int, block_size: int, delimiter: str,
                 quoting: bool) -> None:
        self.path, self.offset = path, offset
        self._compression, self._size = compression, max(1, int(block_size))
        self._delimiter, self._quoting = delimiter, quoting
        self._seekable = compression == ""
        self._buf: bytearray | None = None
        self._have = 0  # bytes of data in _buf
        self._used = 0  # of which handed out as the last block (dropped at the next call)
        self._fh = open_csv(path, compression, offset, url_buffer=self._size)  # a block: one request

    def _fill(self, upto: int) -> bool:
        """Read until the buffer holds `upto` bytes; True when the stream ended first."""
        if self._buf is None or len(self._buf) < upto:
            grown = _buffer(upto)
            if self._buf is not None:
                grown[:self._have] = memoryview(self._buf)[:self._have]
                _release(self._buf)
            self._buf = grown
        view = memoryview(self._buf)
        try:
            while self._have < upto:
                got = _read_into(self._fh, view[self._have:upto])
                if not got:
                    return True
                self._have += got
        except (OSError, EOFError, zlib.error) as e:
            hint = "; check that compression_type matches the file" if self._compression else ""
            raise UnreadableFileError(f"error reading {self.path!r}: {e}{hint}") from e
        finally:
            view.release()
        return False

    def next_block(self) -> Block | None:
        """The next block, or None at the end of the file."""
        if self._used:  # the rest of the buffer (a compressed stream's) moves to its start
            rest = self._have - self._used
            self._buf[:rest] = self._buf[self._used:self._have]
            self._have, self._used = rest, 0
        at_eof = self._fill(self._size) if self._have < self._size else False
        while True:
            truncated = not at_eof and self._have >= MAX_RECORD_BYTES
            found = scan(self._buf, self._delimiter, self._quoting, at_eof, truncated, self._have)
            if found.bad is not None:
                pos, end, reason = found.bad
                return self._take(end, (pos, reason), found.quoted)
            if found.end:
                return self._take(found.end, None, found.quoted)
            if at_eof:
                self._have = 0
                return None
            # Grow geometrically (linear total cost), never much past MAX_RECORD_BYTES.
            have = self._have
            at_eof = self._fill(have + max(1, min(max(self._size, have), MAX_RECORD_BYTES - have)))

    def _take(self, end: int, bad: tuple[int, str] | None, quoted: bool) -> Block:
        # A view of the buffer; a plain file seeks back to the cut instead of keeping the rest.
        block = Block(self.offset, memoryview(self._buf)[:end], bad, quoted)
        self.offset += end
        if end < self._have and self._seekable:
            self._fh.seek(self.offset)
            self._have = end
        self._used = end
        return block

    def done(self) -> None:
        """The last block is no longer needed: unless bytes of the file wait in the buffer (a
        compressed stream's), the buffer goes back to the shared pool, so that readers open
        side by side (interleave) share a few buffers instead of holding one each."""
        if self._buf is not None and self._have == self._used:
            _release(self._buf)
            self._buf, self._have, self._used = None, 0, 0

    def line_of(self, offset: int) -> int:
        """1-based line number of the line starting at byte `offset` (error path only)."""
        line, done = 1, 0
        with open_csv(self.path, self._compression) as f:
            while done < offset:
                chunk = f.read(min(1 << 24, offset - done))
                if not chunk:
                    break
                line += chunk.count(b"\n")
                done += len(chunk)
        return line

    def close(self) -> None:
        """Close the file (idempotent); the last block is invalid from here on."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._buf is not None:
            _release(self._buf)
            self._buf = None

    def __enter__(self) -> BlockReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
