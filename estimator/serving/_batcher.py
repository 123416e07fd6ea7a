"""Dynamic batching: concurrent requests merged into one call, no wait when idle.

One worker task takes everything queued *right now* (up to ``max_batch_size`` examples)
and hands it to ``run``; meanwhile new requests queue up for the next call. A request
arriving at an idle server therefore runs at once; under load, batches grow by themselves.
``run`` is called on the event loop (``executor=None``: cheapest when the device call is
short, since a thread would pay GIL hand-offs on every call) or on ``executor``'s thread
(parsing overlaps the device call: better for models that take milliseconds). ``batch_timeout_s`` > 0 additionally lets a batch that already holds several
requests wait that long for more (a lone request never waits).

``run(items) -> list`` receives the queued items and returns, per item, its result or the
exception to raise for it (so one bad request fails alone).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

RunFn = Callable[[list], list]


class Batcher:
    """Merges concurrent ``submit`` calls into ``run(items)`` calls on ``executor``."""

    def __init__(self, run: RunFn, executor: Executor | None, max_batch_size: int, batch_timeout_s: float = 0.0):
        self._run = run
        self._executor = executor
        self._max = max_batch_size
        self._timeout = batch_timeout_s
        self._queue: collections.deque = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._closed = False

    async def submit(self, item: Any, size: int) -> Any:
        """Queues ``item`` (``size`` examples) and returns its result from ``run``."""
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._work())
        fut = loop.create_future()
        self._queue.append((item, size, fut))
        self._wakeup.set()
        return await fut

    def close(self) -> None:
        """Lets the worker exit once its queue is empty (a later submit restarts it)."""
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()

    def _take(self, batch: list, rows: int) -> int:
        while self._queue and rows + self._queue[0][1] <= self._max:
            entry = self._queue.popleft()
            batch.append(entry)
            rows += entry[1]
        return rows

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            first = self._queue.popleft()
            batch = [first]
            rows = self._take(batch, first[1])
            if self._timeout > 0 and len(batch) > 1 and rows < self._max:
                await asyncio.sleep(self._timeout)
                self._take(batch, rows)
            try:
                items = [e[0] for e in batch]
                if self._executor is None:
                    results = self._run(items)
                else:
                    results = await loop.run_in_executor(self._executor, self._run, items)
            except Exception as e:  # noqa: BLE001 - every waiting request must hear about it
                results = [e] * len(batch)
            for (_, _, fut), result in zip(batch, results, strict=True):
                _resolve(fut, result)


class Unbatched:
    """Same interface as Batcher, one ``run([item])`` call per request (no batching)."""

    def __init__(self, run: RunFn, executor: Executor | None):
        self._run = run
        self._executor = executor

    async def submit(self, item: Any, size: int) -> Any:
        """Runs ``item`` alone (on the executor, if any) and returns its result."""
        if self._executor is None:
            (result,) = self._run([item])
        else:
            (result,) = await asyncio.get_running_loop().run_in_executor(self._executor, self._run, [item])
        if isinstance(result, Exception):
            raise result
        return result

    def close(self) -> None:
        """Nothing to release."""


def _resolve(fut: asyncio.Future, result: Any) -> None:
    if fut.done():  # the client went away
        return
    if isinstance(result, Exception):
        fut.set_exception(result)
    else:
        fut.set_result(result)
