"""Which versions of a model are served: newest complete export under the base path, polled.

A new version is loaded and compiled for every batch bucket *before* it replaces the
current one, so a swap never makes a request wait or fail; requests already holding the
old version finish on it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from estimator._export_dir import complete_versions
from estimator._predictor import Predictor
from estimator.serving._batcher import Batcher, Unbatched

log = logging.getLogger("estimator.serving")


@dataclass(frozen=True)
class ServedVersion:
    """One loaded version: its number, predictor and batcher."""

    version: int
    predictor: Predictor
    batcher: Batcher | Unbatched


class VersionManager:
    """Loads the newest complete version under ``base_path``; ``refresh()`` polls for a newer one."""

    def __init__(self, base_path: str, make_batcher: Callable[[Predictor], Batcher | Unbatched], max_batch_size: int):
        self.base_path = base_path
        self._make_batcher = make_batcher
        self._max_batch_size = max_batch_size
        self._current: ServedVersion | None = None
        self._failed: set[int] = set()

    @property
    def current(self) -> ServedVersion | None:
        """The version served by default (None before any complete export exists)."""
        return self._current

    def refresh(self) -> ServedVersion | None:
        """Loads the newest complete version if it is newer than the served one; returns the retired one."""
        candidates = [v for v in complete_versions(self.base_path) if v not in self._failed]
        if not candidates or (self._current is not None and candidates[-1] <= self._current.version):
            return None
        version = candidates[-1]
        path = os.path.join(self.base_path, str(version))
        try:
            predictor = Predictor(path, max_bucket=self._max_batch_size)
            predictor.warmup(self._max_batch_size)
        except Exception:  # noqa: BLE001 - a bad export must not take the server down
            log.exception("Could not load version %d from %s; still serving %s.", version, path,
                          self._current.version if self._current else "nothing")
            self._failed.add(version)
            return None
        old, self._current = self._current, ServedVersion(version, predictor, self._make_batcher(predictor))
        log.info("Serving version %d from %s.", version, path)
        return old
