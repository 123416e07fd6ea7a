"""`prefetch`: produce items ahead of the consumer in a background thread."""

from __future__ import annotations

from input_pipelines._background import Background
from input_pipelines._base import _Context, _Iterator
from input_pipelines.dataset import Dataset


class Prefetch(Dataset):
    """Up to `buffer_size` items (batches after `batch()`) read ahead in a thread.

    Parsing in pyarrow and most numpy work release the GIL, so reading overlaps with the
    consumer (e.g. the train step). The iterator state stays exact: it is the position of the
    next item handed to the consumer, not of the read-ahead. With `max_bytes`, fewer items are
    read ahead when `buffer_size` of them would take more memory than that.
    """

    def __init__(self, parent: Dataset, buffer_size: int, max_bytes: int | None = None) -> None:
        super().__init__(f"{parent._signature}/prefetch", parent._depth)
        self._parent, self._size, self._max_bytes = parent, int(buffer_size), max_bytes

    def _iterator(self, ctx: _Context) -> _Iterator:
        up = self._parent._iterator(ctx)
        if self._size <= 0:
            return up
        return Background(up, self._size, max_bytes=self._max_bytes)
