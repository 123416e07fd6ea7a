"""Versioned export directories: atomic publication and listing of complete versions.

An export lives at ``<export_dir_base>/<version>/`` where ``<version>`` is an integer (a
Unix timestamp in seconds, bumped to stay unique and increasing), as TensorFlow Serving
expects. It is written in a hidden temporary directory, fsynced, then renamed into
place, so a half-written export is never visible under its final name. A version also
counts as complete only once its signature file (:data:`SIGNATURE_FILE`) exists; since
format version 2 the signature also lists every file's size and SHA-256 (``manifest``), so a
version copied file by file (cp -r, rsync, gsutil) is recognisably incomplete until each
listed file has its full size (:func:`incomplete_reason`) and the loader checks the digests.

Buckets (gs://, s3://: any URL) have no rename. There an export claims its version first, by
creating ``<version>/`` :data:`CLAIM_FILE` only if absent (a conditional upload, so two
exporters racing never share a number), then uploads its files, and the signature last: the
signature's appearance is the commit. Readers see the version as incomplete until then.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from input_pipelines import fs

SIGNATURE_FILE = "saved_model.json"
FORMAT = "jax-estimator-export"
FORMAT_VERSION = 2  # 2: the signature's "manifest" lists each file's size and sha256
STRING = "string"  # the dtype name of a string input or output in the signature
CLAIM_FILE = ".export-claim.json"  # on buckets: who took this version number, and when


def version_files(export_dir_base: str) -> dict[int, dict[str, tuple[int, str]]]:
    """Integer version -> its files (relative name -> (size, change token)), from one listing.

    On buckets a single recursive listing of ``export_dir_base``; FileNotFoundError when
    nothing is there (see ``input_pipelines.fs.stat_tree``).
    """
    versions: dict[int, dict[str, tuple[int, str]]] = {}
    for name, stat in fs.stat_tree(export_dir_base).items():
        head, _, rest = name.partition("/")
        if head.isdigit() and rest:
            versions.setdefault(int(head), {})[rest] = stat
    return versions


class ExportDirError(OSError):
    """An export directory could not be written or published."""


def complete_versions(export_dir_base: str) -> list[int]:
    """Returns the sorted integer versions under ``export_dir_base`` holding a signature file."""
    if fs.is_url(export_dir_base):
        try:
            return sorted(v for v, files in version_files(export_dir_base).items() if SIGNATURE_FILE in files)
        except FileNotFoundError:
            return []
    try:
        names = os.listdir(export_dir_base)
    except FileNotFoundError:
        return []
    versions = []
    for name in names:
        if name.isdigit() and os.path.isfile(os.path.join(export_dir_base, name, SIGNATURE_FILE)):
            versions.append(int(name))
    return sorted(versions)


def member_path(export_dir: str, name: Any) -> str | None:
    """``export_dir/name`` when ``name`` is a relative path staying inside ``export_dir``, else None.

    Rejects absolute paths, ``..`` components and symlinks leading out of the directory, so a
    crafted signature cannot make a loader read arbitrary files.
    """
    if not isinstance(name, str) or not name or os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
        return None
    if fs.is_url(export_dir):  # no symlinks on buckets; a name must not be a URL or climb out
        parts = name.split("/")
        if "://" in name or "\\" in name or name.startswith("/") or "" in parts or "." in parts:
            return None
        return fs.join(export_dir, name)
    path = os.path.join(export_dir, name)
    root = os.path.realpath(export_dir)
    if os.path.commonpath([root, os.path.realpath(path)]) != root:
        return None
    return path


def incomplete_reason(export_dir: str, files: Mapping[str, tuple[int, Any]] | None = None,
                      signature: bytes | None = None) -> str | None:
    """Why ``export_dir`` is not (yet) a complete export, or None when it looks complete.

    Cheap: the signature file must parse and every file it lists must exist, with the
    manifest's size where it has one (stat calls locally; one listing on buckets). Whether the
    contents are right is the loader's check (digests); a reason here means "wait", not "broken".

    Args:
      files: the directory's files as ``version_files`` lists them (name -> (size, token)),
        when the caller has listed already; sizes are then taken from it.
      signature: the signature file's bytes, when the caller has them already.
    """
    if files is None and fs.is_url(export_dir):
        try:
            files = fs.stat_tree(export_dir)
        except FileNotFoundError:
            files = {}
    if files is not None and SIGNATURE_FILE not in files:
        return f"{SIGNATURE_FILE} is missing"
    try:
        parsed = json.loads(signature if signature is not None else fs.read_bytes(fs.join(export_dir, SIGNATURE_FILE)))
    except FileNotFoundError:
        return f"{SIGNATURE_FILE} is missing"
    except (OSError, ValueError):
        return f"{SIGNATURE_FILE} is not readable JSON yet"
    if not isinstance(parsed, dict):
        return None  # not ours to judge: the loader names the problem
    manifest = parsed.get("manifest")
    listed = parsed.get("files")
    if isinstance(manifest, dict):
        expected = {name: entry.get("bytes") if isinstance(entry, dict) else None for name, entry in manifest.items()}
    elif isinstance(listed, dict):
        expected = {name: None for name in listed.values() if name}
    else:
        return None
    for name, size in expected.items():
        path = member_path(export_dir, name)
        if path is None:
            continue
        if files is not None:
            if name not in files:
                return f"{name} is missing"
            got = files[name][0]
        else:
            try:
                got = os.stat(path).st_size
            except FileNotFoundError:
                return f"{name} is missing"
            except OSError:
                continue
        if isinstance(size, int) and got != size:
            return f"{name} has {got} of {size} bytes"
    return None


def _fsync_tree(path: str) -> None:
    """fsyncs every file and directory under ``path`` (directories after their contents)."""
    for root, _dirs, files in os.walk(path, topdown=False):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(root)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _next_version(existing: list[int]) -> int:
    """The current Unix time, or one past the newest existing version if that is later."""
    return max([int(time.time())] + [v + 1 for v in existing])


def _publish(tmp_dir: str, export_dir_base: str) -> str:
    """Renames ``tmp_dir`` to the next free integer version; returns the final path."""
    version = _next_version([int(n) for n in os.listdir(export_dir_base) if n.isdigit()])
    for _ in range(1000):
        final = os.path.join(export_dir_base, str(version))
        if not os.path.exists(final):
            try:
                os.rename(tmp_dir, final)
                _fsync_dir(export_dir_base)
                return final
            except OSError as e:  # lost a race to another writer: try the next number
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        version += 1
    raise ExportDirError(f"Could not find a free version number under {export_dir_base!r}.")


def _claim_version(export_dir_base: str) -> str:
    """Takes the next free version on a bucket by creating its claim object; returns the version's URL."""
    try:
        existing = [int(n) for n in fs.listdir(export_dir_base) if n.isdigit()]
    except FileNotFoundError:
        existing = []
    claim = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "created_unix": time.time(),
                        "writer": uuid.uuid4().hex})
    version = _next_version(existing)
    for _ in range(1000):
        final = fs.join(export_dir_base, str(version))
        try:
            claimed = fs.create_exclusively(fs.join(final, CLAIM_FILE), claim)
        except FileNotFoundError as e:
            raise ExportDirError(f"Cannot export to {export_dir_base!r}: its bucket does not exist (mistyped?) or "
                                 f"is not visible with these credentials ({e}).") from e
        except OSError as e:
            raise ExportDirError(f"Cannot export to {export_dir_base!r}: writing {fs.join(final, CLAIM_FILE)!r} "
                                 f"failed ({type(e).__name__}: {e}); check the bucket's name and your "
                                 "credentials.") from e
        if claimed:
            return final
        version += 1  # another exporter holds it
    raise ExportDirError(f"Could not claim a free version number under {export_dir_base!r}.")


@contextlib.contextmanager
def atomic_export_dir(export_dir_base: str) -> Iterator[list[str]]:
    """Context manager yielding ``[dir]`` to write an export into; afterwards ``[final_path]``.

    Write the export's files into ``box[0]`` inside the ``with`` block, the signature file
    last. Locally ``box[0]`` is a temporary directory: when the block ends without an
    exception it is fsynced and renamed to ``export_dir_base/<version>`` and ``box[0]``
    becomes that final path. On a bucket (no rename) ``box[0]`` is the claimed final
    ``<version>`` directory from the start, and the signature's upload is the commit. On an
    exception what was written is removed.
    """
    if fs.is_url(export_dir_base):
        final = _claim_version(export_dir_base)
        try:
            yield [final]
        except BaseException:
            with contextlib.suppress(Exception):  # best effort: the error that got us here matters
                fs.rmtree(final)
            raise
        return
    os.makedirs(export_dir_base, exist_ok=True)
    tmp_dir = os.path.join(export_dir_base, f".tmp-export-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.mkdir(tmp_dir)
    box = [tmp_dir]
    try:
        yield box
        _fsync_tree(tmp_dir)
        box[0] = _publish(tmp_dir, export_dir_base)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


STALE_TMP_SECS = 24 * 3600


def _tmp_pid(name: str) -> int | None:
    parts = name.split("-")
    return int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else None


def _writer_gone(pid: int | None, host: str | None, started: float) -> bool:
    """Whether an export begun by ``pid`` on ``host`` at ``started`` is abandoned: the process
    (on this host) is gone, or it began a day ago."""
    dead = pid is not None and host == socket.gethostname() and pid != os.getpid() and not _alive(pid)
    return dead or time.time() - started > STALE_TMP_SECS


def remove_stale_tmp(export_dir_base: str) -> list[str]:
    """Deletes unfinished exports of writers that died (their process on this host is gone, or
    they began a day ago): temporary directories locally, claimed versions without a signature
    on buckets; returns the deleted paths."""
    if fs.is_url(export_dir_base):
        return _remove_stale_claims(export_dir_base)
    deleted = []
    try:
        names = os.listdir(export_dir_base)
    except FileNotFoundError:
        return deleted
    for name in names:
        if not name.startswith(".tmp-export-"):
            continue
        path = os.path.join(export_dir_base, name)
        with contextlib.suppress(OSError):
            if _writer_gone(_tmp_pid(name), socket.gethostname(), os.path.getmtime(path)):
                shutil.rmtree(path, ignore_errors=True)
                deleted.append(path)
    return deleted


def _remove_stale_claims(export_dir_base: str) -> list[str]:
    try:
        versions = version_files(export_dir_base)
    except FileNotFoundError:
        return []
    deleted = []
    for version, files in sorted(versions.items()):
        if SIGNATURE_FILE in files or CLAIM_FILE not in files:
            continue  # committed, or not written by an exporter (a copy in progress): not ours to judge
        path = fs.join(export_dir_base, str(version))
        try:
            claim = json.loads(fs.read_bytes(fs.join(path, CLAIM_FILE)))
            gone = _writer_gone(claim.get("pid"), claim.get("host"), float(claim["created_unix"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # deleted meanwhile, or not a claim we wrote
        if gone:
            fs.rmtree(path)
            deleted.append(path)
    return deleted


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def garbage_collect(export_dir_base: str, keep: int | None) -> list[str]:
    """Deletes all but the newest ``keep`` complete versions, and unfinished exports left by
    crashed writers (see ``remove_stale_tmp``); returns the deleted paths."""
    remove_stale_tmp(export_dir_base)
    if keep is None:
        return []
    versions = complete_versions(export_dir_base)
    doomed = versions[: max(0, len(versions) - keep)]
    deleted = []
    for v in doomed:
        path = fs.join(export_dir_base, str(v))
        # Make it incomplete first (drop the marker) so no reader picks a half-deleted version.
        with contextlib.suppress(FileNotFoundError):
            fs.remove(fs.join(path, SIGNATURE_FILE))
        fs.rmtree(path)
        deleted.append(path)
    return deleted
