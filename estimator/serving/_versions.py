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
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from estimator.export import Predictor, export_incomplete_reason
from estimator.serving._batcher import Batcher, Unbatched

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


def _fingerprint(path: str) -> tuple:
    """Names, sizes and mtimes of a version's files: a change means "try loading again"."""
    try:
        with os.scandir(path) as entries:
            return tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries if e.is_file()))
    except OSError:
        return ()


class VersionManager:
    """Loads the newest complete version under ``base_path``; ``refresh()`` polls for changes.

    Args:
      base_path: directory of integer version subdirectories.
      make_batcher: builds the batcher of a loaded predictor.
      max_batch_size: largest batch compiled at load time.
      max_load_retries: retries of a version that failed to load (TF Serving's
        ``max_num_load_retries``); then it is given up until its files change.
      retry_backoff_secs: wait before the first retry; doubles per retry, capped at 60 s.
    """

    def __init__(self, base_path: str, make_batcher: Callable[[Predictor], Batcher | Unbatched], max_batch_size: int,
                 max_load_retries: int = 5, retry_backoff_secs: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.base_path = base_path
        self._make_batcher = make_batcher
        self._max_batch_size = max_batch_size
        self._max_retries = max_load_retries
        self._backoff = retry_backoff_secs
        self._clock = clock
        self._current: ServedVersion | None = None
        self._failures: dict[int, _Failure] = {}
        self._why_not: str | None = "not polled yet"
        self._warned: str | None = None

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

    def _ready_versions(self) -> tuple[list[int], str | None]:
        try:
            names = os.listdir(self.base_path)
        except FileNotFoundError:
            return [], f"--model_base_path {self.base_path!r} does not exist (mistyped?)"
        except NotADirectoryError:
            return [], f"--model_base_path {self.base_path!r} is not a directory"
        except OSError as e:
            return [], f"--model_base_path {self.base_path!r} cannot be listed ({e.strerror})"
        versions = sorted(int(n) for n in names if n.isdigit())
        if not versions:
            return [], (f"--model_base_path {self.base_path!r} has no version subdirectories (integer names "
                        "such as 1/ or 1700000000/, each an export)")
        ready, why = [], None
        for v in versions:
            reason = export_incomplete_reason(os.path.join(self.base_path, str(v)))
            if reason is None:
                ready.append(v)
            else:
                why = f"version {v} is incomplete: {reason}"
        return ready, why

    def refresh(self) -> ServedVersion | None:
        """Loads the version that should be served if it is not the served one; returns the retired one."""
        ready, why = self._ready_versions()
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
        path = os.path.join(self.base_path, str(version))
        fingerprint = _fingerprint(path)
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
        if failure.fingerprint != _fingerprint(os.path.join(self.base_path, str(version))):
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
