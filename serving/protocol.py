"""uvicorn's HTTP/1.1 protocol with the deadlines it lacks.

uvicorn arms a timer only between keep-alive requests: a client that connects and
trickles a request head, or a body, one byte at a time holds the connection (and a
file descriptor) for as long as it likes. Here each connection gets

- ``header_timeout_s`` from connecting, or from the previous answer, to a complete request head;
- ``body_idle_timeout_s`` of silence at most while a body is arriving, and ``body_timeout_s`` in all.

A head that misses its deadline is answered 408 and closed; a stalled body is closed,
which the route sees as a disconnect, so nothing is stored.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from pestid.serving.settings import get_settings


class DeadlineProtocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout = settings.header_timeout_s
        self.body_idle_timeout = settings.body_idle_timeout_s
        self.body_timeout = settings.body_timeout_s
        self._deadline: asyncio.TimerHandle | None = None
        self._head_by: float | None = None  # when the request head must be complete
        self._body_by: float | None = None  # when the whole body must be in

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._rearm()

    def on_response_complete(self) -> None:
        self._cancel()
        self._head_by = self._body_by = None
        super().on_response_complete()  # also arms uvicorn's keep-alive timer, until the next request's first byte
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._expect_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def _expect_head(self) -> None:
        if self._head_by is None:
            self._head_by = time.monotonic() + self.header_timeout
            self._rearm()

    def _rearm(self) -> None:
        self._cancel()
        state, now = self.conn.their_state, time.monotonic()
        if state is h11.IDLE and self._head_by is not None:
            self._deadline = self.loop.call_at(self._loop_time(self._head_by - now), self._late_head)
        elif state is h11.SEND_BODY:
            self._body_by = self._body_by or now + self.body_timeout
            wait = min(self.body_idle_timeout, self._body_by - now)
            self._deadline = self.loop.call_at(self._loop_time(wait), self._late_body)

    def _loop_time(self, delay: float) -> float:
        return self.loop.time() + max(0.0, delay)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _late_head(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        self.transport.close()

    def _late_body(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        if self.flow.read_paused and time.monotonic() < (self._body_by or 0):  # the app is behind, not the client
            self._rearm()
            return
        self.transport.close()
