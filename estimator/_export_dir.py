"""Versioned export directories: atomic publication and listing of complete versions.

An export lives at ``<export_dir_base>/<version>/`` where ``<version>`` is an integer (a
Unix timestamp in seconds, bumped to stay unique and increasing), as TensorFlow Serving
expects. It is written in a hidden temporary directory, fsynced, then renamed into
place, so a half-written export is never visible under its final name. A version also
counts as complete only once its signature file (:data:`SIGNATURE_FILE`) exists; since
format version 2 the signature also lists every file's size and SHA-256 (``manifest``), so a
version copied file by file (cp -r, rsync, gsutil) is recognisably incomplete until each
listed file has its full size (:func:`incomplete_reason`) and the loader checks the digests.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from typing import Any

SIGNATURE_FILE = "saved_model.json"
FORMAT = "jax-estimator-export"
FORMAT_VERSION = 2  # 2: the signature's "manifest" lists each file's size and sha256
STRING = "string"  # the dtype name of a string input or output in the signature


class ExportDirError(OSError):
    """An export directory could not be written or published."""


def complete_versions(export_dir_base: str) -> list[int]:
    """Returns the sorted integer versions under ``export_dir_base`` holding a signature file."""
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
    path = os.path.join(export_dir, name)
    root = os.path.realpath(export_dir)
    if os.path.commonpath([root, os.path.realpath(path)]) != root:
        return None
    return path


def incomplete_reason(export_dir: str) -> str | None:
    """Why ``export_dir`` is not (yet) a complete export, or None when it looks complete.

    Cheap (stat calls only): the signature file must parse and every file it lists must
    exist, with the manifest's size where it has one. Whether the contents are right is
    the loader's check (digests); a reason here means "wait", not "broken".
    """
    sig_path = os.path.join(export_dir, SIGNATURE_FILE)
    try:
        with open(sig_path, "rb") as f:
            signature = json.loads(f.read())
    except FileNotFoundError:
        return f"{SIGNATURE_FILE} is missing"
    except (OSError, ValueError):
        return f"{SIGNATURE_FILE} is not readable JSON yet"
    if not isinstance(signature, dict):
        return None  # not ours to judge: the loader names the problem
    manifest = signature.get("manifest")
    files = signature.get("files")
    if isinstance(manifest, dict):
        expected = {name: entry.get("bytes") if isinstance(entry, dict) else None for name, entry in manifest.items()}
    elif isinstance(files, dict):
        expected = {name: None for name in files.values() if name}
    else:
        return None
    for name, size in expected.items():
        path = member_path(export_dir, name)
        if path is None:
            continue
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


def _publish(tmp_dir: str, export_dir_base: str) -> str:
    """Renames ``tmp_dir`` to the next free integer version; returns the final path."""
    existing = [int(n) for n in os.listdir(export_dir_base) if n.isdigit()]
    version = max([int(time.time())] + [v + 1 for v in existing])
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


@contextlib.contextmanager
def atomic_export_dir(export_dir_base: str) -> Iterator[list[str]]:
    """Context manager yielding ``[tmp_dir]``; on success publishes it and sets ``[final_path]``.

    Write the export's files into ``box[0]`` inside the ``with`` block; when the block ends
    without an exception the directory is fsynced and renamed to ``export_dir_base/<version>``
    and ``box[0]`` becomes that final path. On an exception the temporary directory is removed.
    """
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


def remove_stale_tmp(export_dir_base: str) -> list[str]:
    """Deletes temporary export directories of writers that died: their process (on this host) is gone,
    or they are a day old; returns the deleted paths."""
    deleted = []
    try:
        names = os.listdir(export_dir_base)
    except FileNotFoundError:
        return deleted
    for name in names:
        if not name.startswith(".tmp-export-"):
            continue
        path = os.path.join(export_dir_base, name)
        pid = _tmp_pid(name)
        with contextlib.suppress(OSError):
            dead = pid is not None and pid != os.getpid() and not _alive(pid)
            if dead or time.time() - os.path.getmtime(path) > STALE_TMP_SECS:
                shutil.rmtree(path, ignore_errors=True)
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
    """Deletes all but the newest ``keep`` complete versions, and temporary directories left a
    day ago by crashed writers; returns the deleted paths."""
    remove_stale_tmp(export_dir_base)
    if keep is None:
        return []
    versions = complete_versions(export_dir_base)
    doomed = versions[: max(0, len(versions) - keep)]
    deleted = []
    for v in doomed:
        path = os.path.join(export_dir_base, str(v))
        # Make it incomplete first (drop the marker) so no reader picks a half-deleted version.
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(path, SIGNATURE_FILE))
        shutil.rmtree(path, ignore_errors=True)
        deleted.append(path)
    return deleted
