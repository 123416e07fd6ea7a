"""One file layer for local paths and bucket URLs (gs://, s3://, any fsspec protocol).

A path without "://" goes to os / builtins exactly as before (same code, same speed); a URL
goes to fsspec, is joined with posixpath and is never made absolute (`os.path.abspath` would
turn gs://b/m into /cwd/gs:/b/m). The gs:// and s3:// back ends (gcsfs, s3fs) come with the
`[gcs]` and `[s3]` extras. Both packages use this module: it is the lowest layer.

Buckets have no directories and no rename: `makedirs` is a no-op there, `write_atomically`
relies on an object appearing whole when its single upload completes, and
`create_exclusively` uses the stores' preconditions (GCS ifGenerationMatch=0, S3 If-None-Match).
"""

from __future__ import annotations

import builtins
import contextlib
import datetime
import errno
import functools
import glob as _glob
import io
import os
import posixpath
import shutil
from collections.abc import Iterator
from typing import IO, Any

_EXTRA_FOR_PROTOCOL = {"gs": "gcs", "gcs": "gcs", "s3": "s3", "s3a": "s3"}


def is_url(path: str | os.PathLike) -> bool:
    """True for 'proto://...' paths (buckets), False for local ones."""
    return "://" in str(path)


def protocol(path: str | os.PathLike) -> str:
    """'gs', 's3', ... for a URL; 'file' for a local path."""
    p = str(path)
    return p.split("://", 1)[0].lower() if is_url(p) else "file"


def absolute(path: str | os.PathLike) -> str:
    """A local path made absolute (with ~ expanded); a URL as given, without a trailing '/'."""
    p = os.fspath(path)
    if is_url(p):
        head, rest = p.split("://", 1)
        return f"{head}://{rest.rstrip('/')}" if rest.strip("/") else p
    return os.path.abspath(os.path.expanduser(p))


def join(base: str | os.PathLike, *parts: str) -> str:
    """os.path.join for local paths, posixpath.join for URLs."""
    b = os.fspath(base)
    return posixpath.join(b, *parts) if is_url(b) else os.path.join(b, *parts)


def dirname(path: str | os.PathLike) -> str:
    """The parent of `path` (a URL keeps its scheme and bucket)."""
    p = os.fspath(path)
    return posixpath.dirname(p.rstrip("/")) if is_url(p) else os.path.dirname(p)


def basename(path: str | os.PathLike) -> str:
    """The last component of `path`."""
    p = os.fspath(path)
    return posixpath.basename(p.rstrip("/")) if is_url(p) else os.path.basename(p)


@functools.cache
def _filesystem_for(proto: str) -> Any:
    try:
        import fsspec
        return fsspec.filesystem(proto)
    except ImportError as e:
        extra = _EXTRA_FOR_PROTOCOL.get(proto)
        hint = (f"install the [{extra}] extra: pip install 'jax-estimator[{extra}]'" if extra
                else "install the fsspec back end for it")
        raise ImportError(f"paths starting with {proto}:// need a file system driver ({e}); {hint}") from e
    except ValueError as e:
        raise ValueError(f"no file system is known for {proto}:// paths ({e}); use a local path, "
                         "gs:// or s3://") from e


if hasattr(os, "register_at_fork"):  # a forked child must not use its parent's client (event loop, sockets)
    os.register_at_fork(after_in_child=_filesystem_for.cache_clear)


def filesystem(path: str | os.PathLike) -> Any:
    """The fsspec file system serving URL `path` (one instance per protocol and process)."""
    return _filesystem_for(protocol(path))


def reset_filesystems() -> None:
    """Forget the cached file systems (after fork or when endpoints change, e.g. in tests)."""
    _filesystem_for.cache_clear()
    try:
        import fsspec
        for cls in {type(fs) for fs in fsspec.AbstractFileSystem._cache.values()}:
            cls.clear_instance_cache()
    except ImportError:
        pass


def forget_listings(path: str | os.PathLike) -> None:
    """Drops the directory listings this process cached for URL `path`'s store (a no-op locally).

    fsspec keeps listings without expiry, so objects that another process wrote or deleted
    since stay unseen by `isdir`, `exists` and listings until they are forgotten.
    """
    p = os.fspath(path)
    if is_url(p):
        filesystem(p).invalidate_cache()


def exists(path: str | os.PathLike) -> bool:
    """Whether a file or directory (a prefix with objects under it, on buckets) is at `path`."""
    p = os.fspath(path)
    return filesystem(p).exists(p) if is_url(p) else os.path.exists(p)


def isdir(path: str | os.PathLike) -> bool:
    """Whether `path` is a directory (a prefix with objects under it, on buckets)."""
    p = os.fspath(path)
    return filesystem(p).isdir(p) if is_url(p) else os.path.isdir(p)


def isfile(path: str | os.PathLike) -> bool:
    """Whether `path` is a file (an object, on buckets)."""
    p = os.fspath(path)
    return filesystem(p).isfile(p) if is_url(p) else os.path.isfile(p)


def getsize(path: str | os.PathLike) -> int:
    """Size of the file at `path` in bytes."""
    p = os.fspath(path)
    if not is_url(p):
        return os.path.getsize(p)
    with _missing_named(p):
        return int(filesystem(p).size(p))


def _fresh_info(path: str) -> dict[str, Any]:
    """fsspec's info of URL `path`, not from a listing cached earlier (objects change under us)."""
    fs = filesystem(path)
    fs.invalidate_cache(_strip(path))
    return fs.info(path)


def modified_time(path: str | os.PathLike) -> float:
    """When the file at `path` was last written, in seconds since the epoch (the store's clock on buckets)."""
    p = os.fspath(path)
    if not is_url(p):
        return os.path.getmtime(p)
    info = _fresh_info(p)
    stamp = _written(info)
    if isinstance(stamp, str):
        stamp = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if isinstance(stamp, datetime.datetime):
        return stamp.timestamp()
    if isinstance(stamp, int | float):
        return float(stamp)
    raise OSError(f"the store does not tell when {p!r} was written (info: {sorted(info)})")


def identity(path: str | os.PathLike) -> tuple[Any, ...]:
    """What changes when the file or directory at `path` is written anew: (path, inode, mtime) locally,
    (url, generation or ETag, size, mtime) of an object on buckets. OSError when it is absent."""
    p = os.fspath(path)
    if not is_url(p):
        stat = os.stat(p)
        return (os.path.realpath(p), stat.st_ino, stat.st_mtime_ns)
    info = _fresh_info(p)
    if info.get("type") == "directory":
        raise IsADirectoryError(f"{p!r} is a prefix, not an object: buckets keep no identity for it")
    return (p, str(_version(info)), info.get("size"), str(_written(info)))


def listdir(path: str | os.PathLike) -> list[str]:
    """Names (not paths) of the entries directly under `path`; FileNotFoundError if none."""
    p = os.fspath(path)
    if not is_url(p):
        return os.listdir(p)
    fs = filesystem(p)
    fs.invalidate_cache(_strip(p))
    with _missing_named(p, "no such directory"):
        entries = fs.ls(p, detail=False)
    if not entries and not fs.isdir(p):
        raise FileNotFoundError(errno.ENOENT, "no such directory", p)
    return [posixpath.basename(e.rstrip("/")) for e in entries]


def stat_tree(path: str | os.PathLike) -> dict[str, tuple[int, str]]:
    """Every file under directory `path`, recursively: relative '/'-joined name -> (size, change token).

    The token changes when the file is rewritten: its mtime in ns locally; on buckets the
    object's generation (GCS) or ETag (S3) with its modification time. On buckets this is one
    listing (paginated), not one request per file. FileNotFoundError when nothing is there
    (a missing directory; on buckets also a prefix without objects, or a missing bucket).
    """
    p = os.fspath(path)
    if not is_url(p):
        if not os.path.isdir(p):
            raise FileNotFoundError(f"no such directory: {p!r}")
        out = {}
        for root, _dirs, files in os.walk(p):
            rel = os.path.relpath(root, p)
            for name in files:
                with contextlib.suppress(FileNotFoundError):  # deleted while walking
                    st = os.stat(os.path.join(root, name))
                    out[name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"] = (st.st_size, str(st.st_mtime_ns))
        return out
    fs = filesystem(p)
    fs.invalidate_cache()
    prefix = _strip(p).rstrip("/") + "/"
    found = fs.find(p, detail=True)
    out = {name[len(prefix):]: (int(info["size"]), _change_token(info)) for name, info in found.items()
           if name.startswith(prefix) and info.get("type") != "directory"}
    if not out:
        raise FileNotFoundError(f"no objects under {p!r}")
    return out


def _change_token(info: dict[str, Any]) -> str:
    return f"{_version(info) or ''}@{_written(info) or ''}"


def _version(info: dict[str, Any]) -> Any:
    """The object's version in fsspec's info: GCS generation, S3 ETag (or VersionId)."""
    return info.get("generation") or info.get("ETag") or info.get("etag") or info.get("VersionId")


def _written(info: dict[str, Any]) -> Any:
    """When the object was written, as the store reports it (gcsfs 'updated'/'mtime', s3fs 'LastModified')."""
    return info.get("mtime") or info.get("LastModified") or info.get("updated")


def makedirs(path: str | os.PathLike) -> None:
    """Create directory `path` and its parents locally (exist_ok); nothing to do on buckets."""
    p = os.fspath(path)
    if not is_url(p):
        os.makedirs(p, exist_ok=True)


def glob(pattern: str | os.PathLike) -> list[str]:
    """Sorted files (not directories) matching `pattern`; `**` matches across directories.

    URL patterns return URLs with their scheme, so the results can be opened again.
    """
    p = os.fspath(pattern)
    if not is_url(p):
        return sorted(f for f in _glob.glob(os.path.expanduser(p), recursive=True) if not os.path.isdir(f))
    fs, proto = filesystem(p), protocol(p)
    fs.invalidate_cache()
    try:
        found = fs.glob(p, detail=True)
    except FileNotFoundError:  # gcsfs: the bucket does not exist (s3fs: nothing found)
        return []
    return sorted(f"{proto}://{name}" for name, info in found.items() if info.get("type") != "directory")


#: Bytes fetched per request when a URL is read through a small `read()` (a header line, a
#: Parquet footer); larger reads go out as ranged requests of their own size.
URL_READ_BUFFER = 1 << 20


def open(path: str | os.PathLike, mode: str = "rb", encoding: str | None = None,  # noqa: A001
         newline: str | None = None, *, url_buffer: int | None = None) -> IO[Any]:
    """`path` opened like builtins.open (binary or text modes 'r', 'w', 'x'; no '+').

    A URL opened for reading is an `io.BufferedReader` (as a local file is) over fsspec's
    file without its own cache: each read the buffer cannot serve is one ranged GET of the
    bytes asked for, `seek` costs nothing, so a reader that seeks to an offset downloads from
    there. `url_buffer` is that buffer's size (None: URL_READ_BUFFER; unused for local paths):
    a read of at least that many bytes goes out directly, a smaller one fetches that many.
    Buckets cannot append ('a' is refused), and 'x' uploads the object when the file is
    closed, only if no object of that name exists then (FileExistsError otherwise).
    """
    p = os.fspath(path)
    if not is_url(p):
        return builtins.open(p, mode, encoding=encoding, newline=newline)
    binary = mode.replace("t", "") if "b" in mode else mode.replace("t", "") + "b"
    if "+" in binary or "a" in binary:
        raise ValueError(f"cannot open {p!r} in mode {mode!r}: objects in a bucket cannot be appended to or "
                         "updated in place; write a new object (or the whole object again) with mode 'w'")
    if binary == "rb":
        with _missing_named(p):
            raw = filesystem(p).open(p, "rb", cache_type="none")
        fh: IO[Any] = io.BufferedReader(raw, max(1, url_buffer or URL_READ_BUFFER))
    elif binary == "xb":
        if exists(p):
            raise FileExistsError(errno.EEXIST, "an object already exists at", p)
        fh = _ExclusiveUpload(p)
    else:
        fh = filesystem(p).open(p, binary)
    if "b" in mode:
        return fh
    return io.TextIOWrapper(fh, encoding=encoding or "utf-8", newline=newline)


class _ExclusiveUpload(io.BytesIO):
    """Mode 'x' on a bucket: the bytes written, uploaded on close only if the name is free.

    (A streamed upload's precondition is not honoured by every store or emulator; a single
    conditional PUT is.) Held in memory: meant for markers and small files.
    """

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url

    def close(self) -> None:
        if not self.closed:
            data = self.getvalue()
            super().close()
            if not create_exclusively(self._url, data):
                raise FileExistsError(errno.EEXIST, "another writer created the object first", self._url)


def read_bytes(path: str | os.PathLike) -> bytes:
    """The whole file at `path`."""
    p = os.fspath(path)
    if is_url(p):
        with _missing_named(p):
            return filesystem(p).cat_file(p)
    with builtins.open(p, "rb") as f:
        return f.read()


def read_text(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """The whole file at `path`, decoded."""
    return read_bytes(path).decode(encoding)


def write_atomically(path: str | os.PathLike, data: bytes | str) -> None:
    """Replace the file at `path` so that readers see the old or the new content, never a part.

    Locally: a temporary file beside it, fsync, os.replace. On buckets: one upload, which
    the store makes visible only whole.
    """
    p = os.fspath(path)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if is_url(p):
        filesystem(p).pipe_file(p, raw)
        return
    os.makedirs(os.path.dirname(os.path.abspath(p)), exist_ok=True)
    tmp = f"{p}.tmp-{os.getpid()}"
    with builtins.open(tmp, "wb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)


def create_exclusively(path: str | os.PathLike, data: bytes | str) -> bool:
    """Write `data` to `path` only if nothing is there; False when something already was.

    Locally O_CREAT|O_EXCL; on GCS and S3 a conditional upload, so two writers racing for
    the same name cannot both win.
    """
    p = os.fspath(path)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if is_url(p):
        try:
            filesystem(p).pipe_file(p, raw, mode="create")
        except FileExistsError:  # gcsfs and s3fs map the failed precondition to it
            return False
        return True
    try:
        fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    return True


def remove(path: str | os.PathLike) -> None:
    """Delete the file at `path` (FileNotFoundError when absent)."""
    p = os.fspath(path)
    if not is_url(p):
        os.remove(p)
        return
    fs = filesystem(p)
    if not fs.isfile(p):
        raise FileNotFoundError(errno.ENOENT, "no such file", p)
    fs.rm_file(p)


def rmtree(path: str | os.PathLike, missing_ok: bool = True) -> None:
    """Delete directory `path` and everything under it."""
    p = os.fspath(path)
    if not is_url(p):
        shutil.rmtree(p, ignore_errors=missing_ok)
        return
    fs = filesystem(p)
    if fs.exists(p):
        fs.rm(p, recursive=True)
    elif not missing_ok:
        raise FileNotFoundError(errno.ENOENT, "no such directory", p)


def move(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move file or directory `src` to `dst` (a copy then a delete on buckets: not atomic)."""
    s, d = os.fspath(src), os.fspath(dst)
    if is_url(s) != is_url(d):
        raise ValueError(f"cannot move {s!r} to {d!r}: both must be local or both URLs")
    if not is_url(s):
        shutil.move(s, d)
        return
    fs, proto = filesystem(s), protocol(s)
    fs.invalidate_cache()
    if fs.isfile(s):
        pairs = [(s, d)]
    else:  # object by object: a recursive copy of "directories" differs between stores
        pairs = [(f"{proto}://{f}", d + f"{proto}://{f}"[len(s):]) for f in fs.find(s)]
    for a, b in pairs:
        fs.copy(a, b)
    fs.rm([a for a, _ in pairs])


@contextlib.contextmanager
def _missing_named(url: str, what: str = "no such file") -> Iterator[None]:
    """Re-raise a client's FileNotFoundError (naming an HTTP path) with the URL the user gave."""
    try:
        yield
    except FileNotFoundError as e:
        raise FileNotFoundError(errno.ENOENT, what, url) from e


def _strip(url: str) -> str:
    return url.split("://", 1)[1]
