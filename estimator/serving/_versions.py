"""Which version of a model is served: the newest complete export under the base path, polled.

A new version is loaded and compiled for every batch bucket *before* it replaces the
current one, so a swap never makes a request wait or fail; requests already holding the
old version finish on it. As TensorFlow Serving's file-system source and load retries:

* a version directory counts only once it is complete (its signature lists every file
  with its size, see ``estimator.export.export_incomplete_reason``): a version copied file by file is waited for;
* the newest complete version that loads is served; one that fails to load is retried with exponential backoff, at most
  ``max_load_retries`` times, and again from scratch whenever its files change;
* when the served version's directory disappears, the newest remaining version is loaded
  (if none remains, the loaded one keeps serving and a warning is logged).

The base path may be a bucket URL (``gs://...``, ``s3://...``). Each poll is then one listing of
the base path: the objects' sizes say which versions are complete (a version whose
``saved_model.json`` is not there yet is one an exporter is still writing), their generations
or ETags are the fingerprints, and a signature is fetched only when it changed. When the
listing fails (network, credentials) the served version stays and the reason is logged.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from estimator.export import (
    SIGNATURE_FILE,
    Predictor,
    export_incomplete_reason,
    export_version_files,
)
from estimator.serving._batcher import Batcher, Unbatched
from input_pipelines import fs

log = logging.getLogger("estimator.serving")


@dataclass(frozen=True)
class ServedVersion:
    """One loaded version: its number, predictor and batcher."""

    version: int
    predictor: Predictor
    batcher: Batcher | Unbatched


@dataclass
class _Failure:
    fingerprint: tuple
    attempts: int
    next_try: float
    message: str


def _fingerprint(files: dict[str, tuple[int, str]]) -> tuple:
    """Names, sizes and change tokens (mtimes, generations, ETags) of a version's files: a change
    means "try loading again"."""
    return tuple(sorted(files.items()))


class VersionManager:
    """Loads the newest complete version under ``base_path``; ``refresh()`` polls for changes.

    Args:
      base_path: directory of integer version subdirectories, or a bucket URL (gs://, s3://).
      make_batcher: builds the batcher of a loaded predictor.
      max_batch_size: largest batch compiled at load time.
      max_load_retries: retries of a version that failed to load (TF Serving's
        ``max_num_load_retries``); then it is given up until its files change.
      retry_backoff_secs: wait before the first retry; doubles per retry, capped at 60 s.
    """

    def __init__(self, base_path: str, make_batcher: Callable[[Predictor], Batcher | Unbatched], max_batch_size: int,
                 max_load_retries: int = 5, retry_backoff_secs: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.base_path = fs.absolute(base_path) if fs.is_url(base_path) else base_path  # URLs: no trailing '/'
        self._make_batcher = make_batcher
        self._max_batch_size = max_batch_size
        self._max_retries = max_load_retries
        self._backoff = retry_backoff_secs
        self._clock = clock
        self._current: ServedVersion | None = None
        self._failures: dict[int, _Failure] = {}
        self._why_not: str | None = "not polled yet"
        self._warned: str | None = None
        self._listing: dict[int, dict[str, tuple[int, str]]] = {}  # buckets: this poll's objects by version
        self._signatures: dict[int, tuple[tuple[int, str], bytes]] = {}  # buckets: (size, token), bytes

    @property
    def current(self) -> ServedVersion | None:
        """The version served by default (None before any complete export has loaded)."""
        return self._current

    @property
    def unavailable_reason(self) -> str:
        """Why nothing is served (when ``current`` is None), for the status page and 503s."""
        return self._why_not or "no version loaded yet"

    def failed_versions(self) -> dict[int, str]:
        """Versions that failed to load (and are not served): version -> error message."""
        return {v: f.message for v, f in self._failures.items()}

    def _ready_versions(self) -> tuple[list[int] | None, str | None]:
        """The complete versions and why a newer one is not (None when the base cannot be listed now)."""
        if fs.is_url(self.base_path):
            return self._ready_bucket_versions()
        try:
            names = os.listdir(self.base_path)
        except FileNotFoundError:
            return [], f"--model_base_path {self.base_path!r} does not exist (mistyped?)"
        except NotADirectoryError:
            return [], f"--model_base_path {self.base_path!r} is not a directory"
        except OSError as e:
            return [], f"--model_base_path {self.base_path!r} cannot be listed ({e.strerror})"
        versions = sorted(int(n) for n in names if n.isdigit())
        reasons = {v: export_incomplete_reason(os.path.join(self.base_path, str(v))) for v in versions}
        return self._judge(reasons)

    def _ready_bucket_versions(self) -> tuple[list[int] | None, str | None]:
        try:
            self._listing = export_version_files(self.base_path)  # one listing for every version
        except FileNotFoundError:
            self._listing = {}
            return [], (f"--model_base_path {self.base_path!r} does not exist: no bucket or no objects under "
                        "that prefix (mistyped?)")
        except Exception as e:  # noqa: BLE001 - network, credentials, a missing driver: say so, keep serving
            return None, f"--model_base_path {self.base_path!r} cannot be listed ({type(e).__name__}: {e})"
        self._signatures = {v: sig for v, sig in self._signatures.items() if v in self._listing}
        reasons = {v: export_incomplete_reason(fs.join(self.base_path, str(v)), files=files,
                                               signature=self._signature(v, files))
                   for v, files in self._listing.items()}
        return self._judge(reasons)

    def _signature(self, version: int, files: dict[str, tuple[int, str]]) -> bytes | None:
        """A bucket version's signature bytes, fetched only when its object changed since the last poll."""
        stat = files.get(SIGNATURE_FILE)
        if stat is None:
            return None
        cached = self._signatures.get(version)
        if cached is not None and cached[0] == stat:
            return cached[1]
        try:
            data = fs.read_bytes(fs.join(self.base_path, str(version), SIGNATURE_FILE))
        except Exception:  # noqa: BLE001 - deleted or unreadable right now: "not ready", judged again next poll
            return b""
        self._signatures[version] = (stat, data)
        return data

    def _judge(self, reasons: dict[int, str | None]) -> tuple[list[int], str | None]:
        if not reasons:
            return [], (f"--model_base_path {self.base_path!r} has no version subdirectories (integer names "
                        "such as 1/ or 1700000000/, each an export)")
        ready, why = [], None
        for v in sorted(reasons):
            if reasons[v] is None:
                ready.append(v)
            else:
                why = f"version {v} is incomplete: {reasons[v]}"
        return ready, why

    def _files_of(self, version: int) -> dict[str, tuple[int, str]]:
        if fs.is_url(self.base_path):
            return self._listing.get(version, {})
        try:
            return fs.stat_tree(os.path.join(self.base_path, str(version)))
        except OSError:
            return {}

    def refresh(self) -> ServedVersion | None:
        """Loads the version that should be served if it is not the served one; returns the retired one."""
        ready, why = self._ready_versions()
        if ready is None:  # the listing failed: nothing is known to have changed
            if self._warned != why:
                log.warning("%s; still serving %s.", why, self._current.version if self._current else "nothing")
                self._warned = why
            if self._current is None:
                self._why_not = why
            return None
        for v in [v for v in self._failures if v not in ready]:
            del self._failures[v]  # deleted or being rewritten: judged afresh once complete
        now = self._clock()
        current = self._current
        if current is not None and current.version not in ready and ready != []:
            log.warning("Version %d disappeared from %s; loading the newest remaining one.", current.version,
                        self.base_path)
            current = None  # fall back (possibly to an older version)
        elif current is not None and current.version not in ready and self._warned != "gone":
            log.warning("Version %d disappeared from %s and no other complete version is there; still "
                        "serving it from memory.", current.version, self.base_path)
            self._warned = "gone"
        candidates = [v for v in ready if self._may_try(v, now)]
        if current is not None:
            candidates = [v for v in candidates if v > current.version]
        if not candidates:
            self._note_unavailable(why, ready)
            return None
        for version in reversed(candidates):  # the newest that loads
            loaded = self._load(version, now)
            if loaded is not None:
                old, self._current = self._current, loaded
                self._why_not, self._warned = None, None
                return old
        self._note_unavailable(why, ready)
        return None

    def _load(self, version: int, now: float) -> ServedVersion | None:
        path = fs.join(self.base_path, str(version))
        fingerprint = _fingerprint(self._files_of(version))
        try:
            predictor = Predictor(path, max_bucket=self._max_batch_size)
            predictor.warmup(self._max_batch_size)
        except Exception as e:  # noqa: BLE001 - a bad export must not take the server down
            self._record_failure(version, path, fingerprint, e, now)
            return None
        self._failures.pop(version, None)
        log.info("Serving version %d from %s.", version, path)
        return ServedVersion(version, predictor, self._make_batcher(predictor))

    def _may_try(self, version: int, now: float) -> bool:
        failure = self._failures.get(version)
        if failure is None:
            return True
        if failure.fingerprint != _fingerprint(self._files_of(version)):
            del self._failures[version]  # its files changed: a fresh start
            return True
        return failure.attempts <= self._max_retries and now >= failure.next_try

    def _record_failure(self, version: int, path: str, fingerprint: tuple, error: Exception, now: float) -> None:
        previous = self._failures.get(version)
        attempts = 1 if previous is None else previous.attempts + 1
        delay = min(60.0, self._backoff * 2 ** (attempts - 1))
        message = f"{type(error).__name__}: {error}"
        serving = self._current.version if self._current else "nothing"
        if attempts <= self._max_retries:
            log.warning("Could not load version %d from %s (attempt %d of %d; retrying in %.3g s; still serving "
                        "%s): %s", version, path, attempts, self._max_retries + 1, delay, serving, message)
            message += f" (attempt {attempts} of {self._max_retries + 1}; retrying in {delay:.3g} s)"
        else:
            log.error("Giving up on version %d from %s after %d attempts (until its files change); still serving "
                      "%s: %s", version, path, attempts, serving, message)
            message += f" (gave up after {attempts} attempts; fix or replace the files to retry)"
        self._failures[version] = _Failure(fingerprint, attempts, now + delay, message)

    def _note_unavailable(self, why: str | None, ready: list[int]) -> None:
        if self._current is not None:
            return
        failures = self.failed_versions()
        if failures:
            v = max(failures)
            why = f"version {v} failed to load: {failures[v]}"
        self._why_not = why or "no complete version yet"
        if self._warned != self._why_not:
            log.warning("Model unavailable: %s.", self._why_not)
            self._warned = self._why_not
