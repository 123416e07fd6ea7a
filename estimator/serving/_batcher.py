"""Dynamic batching: concurrent requests merged into one device call, no wait when idle.

One worker task per served version takes everything queued *right now* (up to
``max_batch_size`` rows), runs it in a thread, and meanwhile new requests queue up for the
next call. A request arriving at an idle server therefore runs at once; under load,
batches grow by themselves. ``batch_timeout_s`` > 0 additionally lets a batch that already
holds several requests wait that long for more (a lone request never waits).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any

import numpy as np

from estimator._predictor import PredictorInputError

Columns = Mapping[str, np.ndarray]
RunFn = Callable[[Columns], dict[str, np.ndarray]]


class Batcher:
    """Merges concurrent ``submit`` calls into batched ``run(columns)`` calls on ``executor``."""

    def __init__(self, run: RunFn, executor: Executor, max_batch_size: int, batch_timeout_s: float = 0.0,
                 on_batch: Callable[[int], None] | None = None):
        self._run = run
        self._executor = executor
        self._max = max_batch_size
        self._timeout = batch_timeout_s
        self._on_batch = on_batch
        self._queue: collections.deque = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._closed = False

    async def submit(self, columns: Columns) -> dict[str, np.ndarray]:
        """Queues one request's columns and returns its slice of the batched outputs."""
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._work())
        fut = loop.create_future()
        self._queue.append((columns, len(next(iter(columns.values()))), fut))
        self._wakeup.set()
        return await fut

    def close(self) -> None:
        """Lets the worker exit once its queue is empty (a later submit restarts it)."""
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()

    def _take(self, batch: list, rows: int) -> int:
        while self._queue and rows + self._queue[0][1] <= self._max:
            item = self._queue.popleft()
            batch.append(item)
            rows += item[1]
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
                rows = self._take(batch, rows)
            await self._run_batch(loop, batch)

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list) -> None:
        if len(batch) == 1:
            merged = batch[0][0]
        else:
            merged = {k: np.concatenate([item[0][k] for item in batch]) for k in batch[0][0]}
        if self._on_batch is not None:
            self._on_batch(sum(item[1] for item in batch))
        try:
            outputs = await loop.run_in_executor(self._executor, self._run, merged)
        except PredictorInputError as e:
            if len(batch) > 1:  # find the culprit: rerun each request alone
                for item in batch:
                    await self._run_batch(loop, [item])
                return
            _set(batch[0][2], exc=e)
            return
        except Exception as e:  # noqa: BLE001 - every waiting request must hear about it
            for item in batch:
                _set(item[2], exc=e)
            return
        start = 0
        for _, n, fut in batch:
            _set(fut, result={k: v[start : start + n] for k, v in outputs.items()})
            start += n


def _set(fut: asyncio.Future, result: Any = None, exc: BaseException | None = None) -> None:
    if fut.done():  # the client went away
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class Unbatched:
    """Same interface as Batcher, one device call per request (``--enable_batching=false``)."""

    def __init__(self, run: RunFn, executor: Executor, on_batch: Callable[[int], None] | None = None):
        self._run = run
        self._executor = executor
        self._on_batch = on_batch

    async def submit(self, columns: Columns) -> dict[str, np.ndarray]:
        """Runs one request's columns on the executor."""
        if self._on_batch is not None:
            self._on_batch(len(next(iter(columns.values()))))
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, columns)

    def close(self) -> None:
        """Nothing to release."""
