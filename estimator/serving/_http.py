"""HTTP connections that cannot be held open by slow or idle clients.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but arms that
timer only after a response: a connection that sends nothing, part of its headers or a
short body is kept forever, so enough of them exhaust the file descriptors and lock every
client out. :func:`protocol_class` adds a per-request deadline to uvicorn's httptools
protocol: from the connection (or the first byte of a request) to the last byte of its
body the client has ``request_timeout_secs``; past it the server answers 408 (when it has
not started an answer) and closes the connection.
"""

from __future__ import annotations

import asyncio

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _DeadlineProtocol(HttpToolsProtocol):
    request_timeout_secs: float = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is a slow request too

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.request_timeout_secs, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            body = orjson.dumps({"error": f"The request was not received within {self.request_timeout_secs:g} s."})
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        self.transport.close()


def protocol_class(request_timeout_secs: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a ``request_timeout_secs`` deadline per request."""
    return type("DeadlineHttpToolsProtocol", (_DeadlineProtocol,), {"request_timeout_secs": float(request_timeout_secs)})
