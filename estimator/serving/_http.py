"""HTTP connections that cannot be held open by slow or idle clients.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but arms that
timer only after a response: a connection that sends nothing, part of its headers or a
short body is kept forever, so enough of them exhaust the file descriptors and lock every
client out. :func:`protocol_class` adds a per-request deadline to uvicorn's httptools
protocol: from the connection (or the first byte of a request) to the last byte of its
body the client has ``request_timeout_secs``; past it the server answers 408 (when it has
not started an answer) and closes the connection.

Deadlines are plain numbers checked by one sweep every quarter timeout (a timer per
request would cost a heap push and a cancel on the hot path), so a connection is closed
between 1 and 1.25 timeouts after its request began.
"""

from __future__ import annotations

import asyncio

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _DeadlineProtocol(HttpToolsProtocol):
    request_timeout_secs: float = 30.0
    _open: set  # this class's connections (each subclass from protocol_class has its own)
    _sweeping: bool = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline_at: float | None = self.loop.time() + self.request_timeout_secs
        self._open.add(self)
        cls = type(self)
        if not cls._sweeping:
            cls._sweeping = True
            self.loop.call_later(self._interval(), cls._sweep, self.loop)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline_at is None:
            self._deadline_at = self.loop.time() + self.request_timeout_secs

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._deadline_at = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._open.discard(self)
        super().connection_lost(exc)

    @classmethod
    def _interval(cls) -> float:
        return max(0.05, cls.request_timeout_secs / 4)

    @classmethod
    def _sweep(cls, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for conn in [c for c in cls._open if c._deadline_at is not None and c._deadline_at <= now]:
            conn._expired()
        if cls._open:
            loop.call_later(cls._interval(), cls._sweep, loop)
        else:
            cls._sweeping = False

    def _expired(self) -> None:
        self._deadline_at = None
        self._open.discard(self)
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            body = orjson.dumps({"error": f"The request was not received within {self.request_timeout_secs:g} s."})
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        self.transport.close()


def protocol_class(request_timeout_secs: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a ``request_timeout_secs`` deadline per request."""
    return type("DeadlineHttpToolsProtocol", (_DeadlineProtocol,),
                {"request_timeout_secs": float(request_timeout_secs), "_open": set()})
