"""TensorBoard event files through tensorboardX, with tf.estimator's tag names.

Only process 0 writes, so a multi-process job produces one set of curves. A gs:// or
s3:// logdir goes through ``input_pipelines.fs`` (fsspec): buckets cannot append, so
the events spool to a local temporary file and each flush uploads the whole event file
as one object, which TensorBoard (``--load_fast=false``) reads like a local one.
tensorboardX's own bucket writers are replaced: they keep the whole file in memory,
need other client libraries and settings (boto3 with S3_ENDPOINT, google-cloud-storage),
and the GCS one uploads again from ``__del__`` at interpreter exit, retrying for two
minutes when the store is gone by then.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import tempfile
from typing import Any

import jax

from input_pipelines import fs

log = logging.getLogger("estimator")


class _BucketEventFile:
    """An event file on a bucket, as tensorboardX's RecordWriter writes it (write / flush / close).

    A flush that fails (the store unreachable for a moment) is logged and retried at the
    next one: the events stay in the spool file.
    """

    def __init__(self, url: str):
        self.url = url
        self._spool = tempfile.TemporaryFile(prefix="tfevents-")
        self._uploaded = -1

    def write(self, data: bytes) -> None:
        self._spool.write(data)

    def flush(self) -> None:
        size = self._spool.tell()
        if size == self._uploaded:
            return
        self._spool.flush()
        self._spool.seek(0)
        try:
            with fs.open(self.url, "wb") as out:
                shutil.copyfileobj(self._spool, out)
            self._uploaded = size
        except Exception as error:  # noqa: BLE001 - summaries must not stop training
            log.warning("Could not upload the event file %s (%s); retrying at the next flush.", self.url, error)
        finally:
            self._spool.seek(size)

    def close(self) -> None:
        if not self._spool.closed:
            self.flush()
            self._spool.close()


class _BucketWriterFactory:
    """tensorboardX's writer-factory protocol for URL logdirs."""

    def open(self, path: str) -> _BucketEventFile:
        return _BucketEventFile(path)

    def directory_check(self, path: str) -> None:
        """Buckets need no directories."""


@functools.cache
def _register_bucket_writer(scheme: str) -> None:
    """Event files under ``scheme://`` URLs are written by ``_BucketEventFile`` (once per process)."""
    from tensorboardX import record_writer

    record_writer.register_writer_factory(scheme, _BucketWriterFactory())


class SummaryWriter:
    """Scalars and text into one event-file directory (a no-op on processes other than 0)."""

    def __init__(self, logdir: str):
        self.logdir = logdir
        self._writer = None
        if jax.process_index() == 0:
            from tensorboardX import SummaryWriter as _TBWriter

            if fs.is_url(logdir):
                _register_bucket_writer(fs.protocol(logdir))
            fs.makedirs(logdir)
            self._writer = _TBWriter(logdir=logdir, flush_secs=10)

    def scalars(self, values: dict[str, Any], step: int) -> None:
        """Writes each scalar under its tag at ``step``."""
        if self._writer is None:
            return
        for tag, value in values.items():
            self._writer.add_scalar(tag, float(value), global_step=int(step))

    def text(self, tag: str, payload: Any, step: int = 0) -> None:
        """Writes a JSON-able payload as a text summary (shown in TensorBoard's Text tab)."""
        if self._writer is None:
            return
        body = payload if isinstance(payload, str) else json.dumps(payload, indent=2, sort_keys=True, default=str)
        self._writer.add_text(tag, f"```\n{body}\n```", global_step=int(step))

    def flush(self) -> None:
        """Writes buffered events to disk."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flushes and closes the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def learning_rate_of(opt_state: Any) -> Any | None:
    """The learning rate an ``optax.inject_hyperparams`` optimizer exposes, else None."""
    found = []

    def visit(node: Any) -> None:
        hyper = getattr(node, "hyperparams", None)
        if isinstance(hyper, dict) and "learning_rate" in hyper:
            found.append(hyper["learning_rate"])
            return
        if isinstance(node, tuple | list):
            for child in node:
                visit(child)
        elif isinstance(node, dict):
            for child in node.values():
                visit(child)
        elif hasattr(node, "inner_state"):
            visit(node.inner_state)

    visit(opt_state)
    return found[0] if found else None
