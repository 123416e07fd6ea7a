"""One writer per model_dir: an exclusive lock file taken by the trainer's process 0.

Two trainers on one model_dir would overwrite each other's checkpoints and config.
``ModelDirLock`` creates ``model_dir/train.lock`` with ``O_CREAT | O_EXCL`` (atomic,
also on network file systems; on a gs:// or s3:// bucket a conditional upload that
fails when the object exists) holding JSON ``{host, pid, start_time, argv, token}``;
a background thread refreshes its mtime (on a bucket: rewrites the object, which
renews its update time) every ``HEARTBEAT_SECS`` while it is held. An existing
lock is stale, and taken over with a warning, when

* it was taken on this host by a process that is no longer alive, or
* it was taken on another host and not refreshed for ``timeout_secs``
  (a crashed host cannot release it; on a bucket its age is the object's update
  time by the store's clock against this host's clock), or
* the caller passes ``break_lock=True`` (the user knows the holder is gone).

Otherwise ``ModelDirLockError`` names the holder. Readers (evaluate, predict,
export, the continuous evaluator) take no lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jax

from estimator import distribute
from input_pipelines import fs

log = logging.getLogger("estimator")

LOCK_FILE = "train.lock"
HEARTBEAT_SECS = 30.0


class ModelDirLockError(RuntimeError):
    """Another trainer holds the model_dir's lock; the message names it."""


def _pid_alive(pid: int, since: Any = None) -> bool:
    """Whether ``pid`` runs and, where /proc tells, was started by ``since`` (not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    try:
        started = os.stat(f"/proc/{pid}").st_ctime
    except OSError:
        return True
    return not isinstance(since, int | float) or started <= since + 5.0


def read_holder(path: str) -> dict[str, Any] | None:
    """The lock file's holder record; {} for an unreadable record; None when there is no lock file."""
    try:
        holder = json.loads(fs.read_text(path))
        return holder if isinstance(holder, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being written right now, or garbage: judged by its age alone


def _describe(holder: dict[str, Any]) -> str:
    started = holder.get("start_time")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, int | float) else "?"
    return f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, started {when}"


class ModelDirLock:
    """The exclusive training lock of one model_dir; re-entrant within a process.

    Args:
      model_dir: the directory to lock (created if missing).
      timeout_secs: a lock of another host not refreshed for this long is stale.
      break_lock: take the lock over whoever holds it (with a warning).
    """

    def __init__(self, model_dir: str, timeout_secs: float = 3600.0, break_lock: bool = False):
        self.path = fs.join(model_dir, LOCK_FILE)
        self._timeout = timeout_secs
        self._break = break_lock
        self._depth = 0
        self._token = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        """Takes the lock or raises ``ModelDirLockError`` naming its holder."""
        if self._depth:
            self._depth += 1
            return
        self._token = uuid.uuid4().hex
        record = {"host": socket.gethostname(), "pid": os.getpid(), "start_time": time.time(),
                  "argv": sys.argv, "token": self._token}
        for _ in range(3):
            try:
                fs.makedirs(fs.dirname(self.path))
                if fs.create_exclusively(self.path, json.dumps(record)):
                    break
            except (PermissionError, OSError) as error:
                if isinstance(error, FileExistsError):
                    raise
                raise ModelDirLockError(
                    f"Cannot train in model_dir {fs.dirname(self.path)}: it is not writable "
                    f"({error.strerror or error}). Training writes checkpoints there; evaluate, predict and export "
                    "work on a read-only model_dir.") from None
            holder = read_holder(self.path)
            if holder is None:
                continue  # released meanwhile
            reason = self._stale_reason(holder)
            if reason is None:
                raise ModelDirLockError(
                    f"model_dir {fs.dirname(self.path)} is locked by another trainer ({_describe(holder)}; "
                    f"lock file {self.path}). Two trainers on one model_dir overwrite each other's checkpoints. "
                    "Wait for it to finish, use another model_dir, or, if that trainer is gone, delete the lock "
                    "file or pass break_model_dir_lock (run.break_model_dir_lock=true)."
                )
            log.warning("Taking over the lock %s of %s: %s.", self.path, _describe(holder), reason)
            self._remove_if(holder)
        else:
            raise ModelDirLockError(f"Could not take the lock {self.path}: other processes keep taking it.")
        self._depth = 1
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name="model-dir-lock", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Releases one acquire; the last one removes the lock file."""
        if not self._depth:
            return
        self._depth -= 1
        if self._depth:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        holder = read_holder(self.path)
        if holder is not None and holder.get("token") == self._token:
            with contextlib.suppress(OSError):  # a read-only or vanished model_dir: nothing to release
                fs.remove(self.path)

    def __enter__(self) -> ModelDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def _stale_reason(self, holder: dict[str, Any]) -> str | None:
        if self._break:
            return "break_model_dir_lock was given"
        same_host = holder.get("host") == socket.gethostname()
        pid = holder.get("pid")
        if same_host and isinstance(pid, int):
            alive = _pid_alive(pid, holder.get("start_time"))
            return None if alive else f"process {pid} on this host is no longer alive"
        try:
            age = time.time() - fs.modified_time(self.path)
        except FileNotFoundError:
            return "it was just released"
        if age > self._timeout:
            return f"it was not refreshed for {age:.0f} s (more than the {self._timeout:.0f} s timeout)"
        return None

    def _remove_if(self, holder: dict[str, Any]) -> None:
        """Removes the lock file if it still holds ``holder`` (not a lock taken meanwhile)."""
        if fs.is_url(self.path):  # no rename on buckets: read, compare, delete (a window of one request)
            if read_holder(self.path) == holder:
                with contextlib.suppress(FileNotFoundError):
                    fs.remove(self.path)
            return
        aside = f"{self.path}.stale-{uuid.uuid4().hex}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if read_holder(aside) == holder:
            os.remove(aside)
            return
        try:  # someone took the lock between our read and the rename: put theirs back
            os.link(aside, self.path)
        except FileExistsError:
            pass
        os.remove(aside)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECS):
            try:
                self._refresh()
            except Exception as error:  # noqa: BLE001 - a failed refresh must not stop training
                log.warning("Could not refresh the lock %s (%s); retrying in %.0f s.", self.path, error, HEARTBEAT_SECS)

    def _refresh(self) -> None:
        """Renews the lock's age: touches the file; on a bucket rewrites the object, if it is still ours."""
        if not fs.is_url(self.path):
            with contextlib.suppress(OSError):
                os.utime(self.path)
            return
        holder = read_holder(self.path)
        if not holder or holder.get("token") != self._token:  # broken by someone: never overwrite their lock
            log.warning("The lock %s is no longer held by this trainer (now: %s).", self.path,
                        _describe(holder) if holder else "none")
            return
        fs.write_atomically(self.path, json.dumps(holder))


@contextlib.contextmanager
def chief_holds(lock: ModelDirLock) -> Iterator[None]:
    """Process 0 holds ``lock`` within ``with``; every process raises ``ModelDirLockError`` together if it cannot."""
    chief = jax.process_index() == 0
    error = None
    if chief:
        try:
            lock.acquire()
        except ModelDirLockError as e:
            error = e
    agreed = distribute.agreed(error is None)  # every process fails together
    if error is not None:
        raise error
    if not agreed:
        raise ModelDirLockError(f"process 0 could not take the training lock of {fs.dirname(lock.path)}; see its log.")
    try:
        yield
    finally:
        if chief:
            lock.release()
