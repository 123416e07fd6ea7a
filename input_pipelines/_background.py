"""`Background`: runs an upstream iterator in a thread (prefetch), optionally applying a function
in a thread pool (parallel map). Items keep their order, so results stay deterministic.

Each queued item carries the upstream state taken just after it was produced; `state()` is
that of the last item the consumer received (the position before the next one), so threads
never make the checkpointed position run ahead of what was delivered, and `state()` never
waits for the thread.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from input_pipelines import _structure as st
from input_pipelines._base import _Iterator

_ITEM, _END, _ERROR = 0, 1, 2
_MAX_WAIT = 0.005  # seconds a waiting consumer may sleep while an item is ready


class Background(_Iterator):
    """Ordered read-ahead of up to `buffer_size` items, `fn` applied by `num_parallel` threads.

    Hand-offs wake a sleeping thread only in bursts (a thread sleeping, waking and taking the
    GIL costs ~20 us of CPU, more than a batch of rows costs to make): a full buffer lets the
    producer sleep until the consumer has taken half of it, and an empty one lets the consumer
    sleep until half of it is ready again, the stream ended or `_MAX_WAIT` passed (so a slow
    source delays an item by at most that). With `max_bytes`, the buffer holds fewer items when
    the first one shows that `buffer_size` of them would take more memory (at least 2).
    """

    def __init__(
        self,
        up: _Iterator,
        buffer_size: int,
        fn: Callable[[Any], Any] | None = None,
        num_parallel: int = 0,
        max_bytes: int | None = None,
    ) -> None:
        self._up, self._fn, self._num_parallel = up, fn, num_parallel
        self._max_bytes = max_bytes
        self._resize(max(1, buffer_size))
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._head: tuple[int, Any, Any] | None = None

    def _resize(self, size: int) -> None:
        self._size = size
        self._burst = max(1, size // 2)  # items per wake-up of a sleeping thread

    def _fit(self, item: Any) -> None:
        """Shrink the buffer to `max_bytes` worth of items like `item` (called once)."""
        nbytes = sum(getattr(leaf, "nbytes", 0) for leaf in st.leaves(item))
        fits = self._max_bytes // max(1, nbytes)
        if fits < self._size:
            with self._room:
                self._resize(max(2, fits))
        self._max_bytes = None

    def _start(self) -> None:
        self._position = self._up.state()  # after the last item delivered
        self._stop = False
        self._items: collections.deque = collections.deque()
        lock = threading.Lock()
        self._ready = threading.Condition(lock)  # the consumer waits here for items
        self._room = threading.Condition(lock)  # the producer waits here for space
        if self._fn is not None and self._num_parallel > 0:
            self._pool = ThreadPoolExecutor(self._num_parallel, thread_name_prefix="input-map")
        self._thread = threading.Thread(target=self._work, name="input-prefetch", daemon=True)
        self._thread.start()

    def _put(self, entry: tuple[int, Any, Any]) -> bool:
        with self._room:
            while len(self._items) >= self._size and not self._stop:
                self._room.wait()
            if self._stop:
                return False
            self._items.append(entry)
            if len(self._items) >= self._burst or entry[0] != _ITEM:
                self._ready.notify()
            return True

    def _work(self) -> None:
        try:
            while not self._stop:
                try:
                    item = self._up.next()
                except StopIteration:
                    self._put((_END, None, None))
                    return
                if self._pool is not None:
                    item = self._pool.submit(self._fn, item)
                elif self._fn is not None:
                    item = self._fn(item)
                if self._max_bytes is not None:
                    self._fit(item)
                if not self._put((_ITEM, item, self._up.state())):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer thread
            self._put((_ERROR, e, None))

    def _peek(self) -> tuple[int, Any, Any]:
        if self._head is None:
            if self._thread is None:
                self._start()
            with self._ready:
                while not self._items:
                    self._ready.wait(_MAX_WAIT)
                self._head = self._items.popleft()
                if len(self._items) <= self._size - self._burst:
                    self._room.notify()
        return self._head

    def next(self) -> Any:
        kind, value, after = self._peek()
        if kind == _END:
            raise StopIteration
        if kind == _ERROR:
            raise value
        self._head = None
        value = value.result() if isinstance(value, Future) else value
        self._position = after
        return value

    def state(self) -> dict[str, Any]:
        return self._up.state() if self._thread is None else self._position

    def restore(self, state: dict[str, Any]) -> None:
        self._shutdown()
        self._up.restore(state)

    def _shutdown(self) -> None:
        if self._thread is not None:
            with self._room:
                self._stop = True
                self._room.notify_all()
            self._thread.join()
            self._thread = None
            self._items.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._head = None

    def close(self) -> None:
        self._shutdown()
        self._up.close()
