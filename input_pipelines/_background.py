"""`Background`: runs an upstream iterator in a thread (prefetch), optionally applying a function
in a thread pool (parallel map). Items keep their order, so results stay deterministic.

Each queued item carries the upstream state taken just before it was produced; `state()` is
the state before the next item the consumer has not received yet, so threads never make the
checkpointed position run ahead of what was delivered.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from input_pipelines._base import _Iterator

_ITEM, _END, _ERROR = 0, 1, 2


class Background(_Iterator):
    """Ordered read-ahead of up to `buffer_size` items, `fn` applied by `num_parallel` threads."""

    def __init__(
        self,
        up: _Iterator,
        buffer_size: int,
        fn: Callable[[Any], Any] | None = None,
        num_parallel: int = 0,
    ) -> None:
        self._up, self._size, self._fn, self._num_parallel = up, max(1, buffer_size), fn, num_parallel
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._head: tuple[int, Any, Any] | None = None

    def _start(self) -> None:
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=self._size)
        if self._fn is not None and self._num_parallel > 0:
            self._pool = ThreadPoolExecutor(self._num_parallel, thread_name_prefix="input-map")
        self._thread = threading.Thread(target=self._work, name="input-prefetch", daemon=True)
        self._thread.start()

    def _put(self, entry: tuple[int, Any, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                pre = self._up.state()
                try:
                    item = self._up.next()
                except StopIteration:
                    self._put((_END, pre, None))
                    return
                if self._pool is not None:
                    item = self._pool.submit(self._fn, item)
                elif self._fn is not None:
                    item = self._fn(item)
                if not self._put((_ITEM, pre, item)):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer thread
            self._put((_ERROR, None, e))

    def _peek(self) -> tuple[int, Any, Any]:
        if self._head is None:
            if self._thread is None:
                self._start()
            self._head = self._queue.get()
        return self._head

    def next(self) -> Any:
        kind, _, value = self._peek()
        if kind == _END:
            raise StopIteration
        if kind == _ERROR:
            raise value
        self._head = None
        return value.result() if isinstance(value, Future) else value

    def state(self) -> dict[str, Any]:
        if self._thread is None and self._head is None:
            return self._up.state()
        kind, pre, value = self._peek()
        if kind == _ERROR:
            raise value
        return pre

    def restore(self, state: dict[str, Any]) -> None:
        self._shutdown()
        self._up.restore(state)

    def _shutdown(self) -> None:
        if self._thread is not None:
            self._stop.set()
            while self._thread.is_alive():
                try:
                    self._queue.get(timeout=0.05)
                except queue.Empty:
                    pass
            self._thread.join()
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._head = None

    def close(self) -> None:
        self._shutdown()
        self._up.close()
