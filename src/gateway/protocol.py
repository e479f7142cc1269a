"""uvicorn's HTTP protocol with deadlines and limits on reading a request, for clients
that trickle or flood.

uvicorn bounds only the idle time between requests (``timeout_keep_alive``): a client
that sends a byte of its headers every few seconds, or opens a connection and sends
nothing, or trickles its body, holds a connection (and its memory) for as long as it
likes. Here every request gets two deadlines:

- its request line and headers must be complete ``header_timeout`` seconds after the
  connection opened or its first byte arrived: past it the client gets a 408 and the
  connection is closed (one that sent nothing is just closed). A request line and
  headers that grow past ``MAX_HEADER_READ`` bytes, or ``MAX_HEADER_FIELDS`` fields, are
  a 431 and closed too, so what a client can make us hold is bounded in bytes as well as
  in time (``gateway.limits`` answers the precise 431, above 64 KiB of headers, to
  anything smaller);
- its body must be complete ``body_timeout`` seconds after its headers: past it the
  connection is closed (the application sees the client disconnect). This also holds
  when the application answered early and the client goes on trickling the body.

A WebSocket handshake stops both clocks: from then on the WebSocket protocol and its
pings are in charge. Deadlines count from a fixed start, so sending faster than nothing
never buys more time.

Two more bounds, on what uvicorn would otherwise hold without limit:

- trailer fields (after a chunked body) are read and dropped, never added to the headers
  the application already has (RFC 9110 §6.5.1 forbids merging them blindly, and nothing
  in the API reads them); a request that sends more than ``MAX_TRAILER_READ`` bytes after
  its headers without any of its body is a 431 and closed;
- at most ``MAX_PIPELINED`` requests are queued behind a response still under way (HTTP/1.1
  pipelining, e.g. behind a stream): at the next one the connection reads no more, answers
  those queued, and closes after the last.

The protocol's own answers (408, 431) are written only when the client awaits no other
response; otherwise the response under way is cut short and the connection closed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.limits import MAX_HEADER_BYTES
from runner.settings import Settings

log = structlog.get_logger("devteam.gateway")

MAX_HEADER_READ = 1024 * 1024
"""Bytes of a request's line and headers read before giving up: far above what the
application accepts (``MAX_HEADER_BYTES``), so that its own, exact 431 answers every
request that merely has large headers, while no client can make us buffer more."""
MAX_HEADER_FIELDS = 1000
"""Header fields a request may have (browsers send a few dozen; Apache refuses more than
100 by default). uvicorn keeps each in a list, and MAX_HEADER_READ of tiny ones would be
200,000 entries and a third of a second of loop CPU; past it the request is a 431."""
MAX_TRAILER_READ = 8 * 1024
"""Bytes a request may send after its headers that carry none of its body (a chunked
body's trailer section, or chunk framing) before the connection is closed. httptools
accumulates a field until its line ends and uvicorn keeps every trailer field, so without
it a client holds memory and loop CPU in proportion to what it sends."""
MAX_PIPELINED = 8
"""Requests read and queued behind a response still under way. uvicorn parses all of a
read, so one 256 KiB read of tiny requests would queue thousands of them, each held for
as long as the response in front of them (a stream: for hours)."""


def _problem(status: int, title: str, detail: str, target: bytes) -> bytes:
    """A problem+json answer written by the protocol itself (the application never saw
    the request), with the same fields as the application's."""
    correlation = uuid.uuid4().hex
    body = msgspec.json.encode({
        "type": f"https://devteam.dev/problems/{status}", "title": title, "status": status,
        "detail": detail, "instance": target[:200].decode("latin-1").split("?", 1)[0],
        "correlationId": correlation})
    return (
        f"HTTP/1.1 {status} {title}\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\nx-correlation-id: {correlation}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


class _Coalescing:
    """The connection's transport as uvicorn's response cycle sees it: a response's head
    leaves with its body.

    uvicorn writes a response's status line and headers, then its body, as two writes:
    two system calls and two TCP segments, which the client reads as two wake-ups. Here
    the head (the cycle's first write, unless it is a ``100 Continue``) is held and goes
    out with the next write, which for a whole response comes in the same step of its
    task, so nothing waits. A stream's head with no body yet goes out at the end of the
    loop step (``call_soon``); everything after the head goes straight through. ``close``
    sends what is held first, ``abort`` drops it.
    """

    __slots__ = ("_head_next", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._head_next = False

    def expect_head(self) -> None:
        """A new response cycle begins: its first write is a head."""
        self.flush()
        self._head_next = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._head_next:
            data = bytes(data)
            if not data.startswith(b"HTTP/1.1 100 "):
                self._head_next = False
                self._held = data
                self._loop.call_soon(self.flush)
                return
        if self._held is not None:
            data, self._held = self._held + data, None
        self._transport.write(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Send a held head (no-op when none is held, or the connection is closing)."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class DeadlineHttpProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` with header and body read deadlines (see the module)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0

    @classmethod
    def configure(cls, settings: Settings) -> None:
        """Take the deadlines from settings (each gateway process calls it before serving)."""
        cls.header_timeout = settings.gateway.header_timeout_seconds
        cls.body_timeout = settings.gateway.body_timeout_seconds

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._accepting = True  # requests are still read on this connection
        self._reading_headers = False
        self._header_bytes = self._header_fields = 0
        self._advanced = False  # this read moved a request on (a boundary or body bytes)
        self._stalled_bytes = 0  # read after a request's headers since its body last moved

    # -- the clocks ------------------------------------------------------------------
    def _arm(self, seconds: float, expired: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if not self._header_bytes:  # it sent nothing: there is nobody to answer
            self.transport.close()
            return
        log.warning("http.header_timeout", client=_peer(self.client),
                    seconds=self.header_timeout)
        self._refuse(408, "Request Timeout",
                     f"the request's headers did not arrive within {self.header_timeout:g} s")

    def _body_too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.warning("http.body_timeout", client=_peer(self.client),
                        seconds=self.body_timeout)
            self.transport.close()

    # -- the limits ------------------------------------------------------------------
    def _moved_on(self) -> None:
        self._advanced, self._stalled_bytes = True, 0

    def _count(self, read: int) -> None:
        """Count a read against the limit of the part of the request it ended in."""
        if self._reading_headers:  # the headers are not complete: all of it is theirs
            self._header_bytes += read
            if self._header_bytes > MAX_HEADER_READ:
                self._refuse(431, "Request Header Fields Too Large",
                             f"request headers are larger than {MAX_HEADER_BYTES} bytes")
            elif self._header_fields > MAX_HEADER_FIELDS:
                self._too_many_fields()
        elif not self._advanced:  # none of it was body: trailer fields, or framing
            self._stalled_bytes += read
            if self._stalled_bytes > MAX_TRAILER_READ:
                log.warning("http.trailers_too_large", client=_peer(self.client),
                            limit=MAX_TRAILER_READ)
                self._refuse(431, "Request Header Fields Too Large",
                             f"request trailer fields are larger than {MAX_TRAILER_READ} bytes")

    def _too_many_fields(self) -> None:
        self._refuse(431, "Request Header Fields Too Large",
                     f"a request may have at most {MAX_HEADER_FIELDS} header fields")

    def _stop_reading_requests(self) -> None:
        """The pipeline is full: read nothing more; those queued are answered, and the
        last one's response closes the connection."""
        self._accepting = self._reading_headers = False
        self.cycle.keep_alive = False
        log.warning("http.pipeline_full", client=_peer(self.client), queued=len(self.pipeline))

    def _refuse(self, status: int, title: str, detail: str) -> None:
        """Read nothing more and close the connection, answering ``status`` first if that
        is the response the client awaits next (the request's application, if it runs,
        sees the client gone); a response under way is cut short."""
        self._disarm()
        if self._answerable():
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True  # it writes nothing after our answer
                cycle.message_event.set()
            self.transport.write(_problem(status, title, detail, self._target()))
        self._accepting = self._reading_headers = False
        self.transport.close()

    def _answerable(self) -> bool:
        """Whether the protocol may answer the request being read: no response of the
        application's is under way or queued ahead of it, nor begun for it."""
        cycle = self.cycle  # the last request's, or this one's once its headers are read
        if self._reading_headers:
            return cycle is None or cycle.response_complete
        return (cycle is not None and cycle.more_body  # its body is still being read
                and not self.pipeline and not cycle.response_started)

    def _target(self) -> bytes:
        """The request target as far as it arrived (empty before the request line)."""
        return bytes(getattr(self, "url", b"") or b"")

    # -- the protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._coalescing = _Coalescing(transport, self.loop)
        self._reading_headers, self._header_bytes, self._header_fields = True, 0, 0
        self._arm(self.header_timeout, self._headers_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._accepting or self.transport.is_closing():
            return  # what follows a refusal, or the requests queued, is never read
        self._advanced = False
        super().data_received(data)
        if self._accepting and not self.transport.is_closing():
            self._count(len(data))

    def _should_upgrade(self) -> bool:
        return self._accepting and super()._should_upgrade()

    # The parser's callbacks. A read is parsed whole, so those after a refusal in it (or
    # a full pipeline) must neither queue a request nor touch the last one's state.
    def on_message_begin(self) -> None:
        if not self._accepting:
            return
        self._moved_on()
        super().on_message_begin()
        if not self._reading_headers:  # the next request on a kept-alive connection
            self._reading_headers, self._header_bytes, self._header_fields = True, 0, 0
            self._arm(self.header_timeout, self._headers_too_slow)

    def on_url(self, url: bytes) -> None:
        if self._accepting:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._reading_headers:
            return  # a trailer field: dropped, and its bytes counted (_count)
        self._header_fields += 1
        if self._header_fields <= MAX_HEADER_FIELDS:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if not self._accepting:
            return
        if self._header_fields > MAX_HEADER_FIELDS:
            self._too_many_fields()  # as a request being read: it has no cycle
            return
        self._reading_headers = False
        self._disarm()
        self._moved_on()
        if len(self.pipeline) >= MAX_PIPELINED:
            self._stop_reading_requests()
            return
        super().on_headers_complete()
        if self.parser.should_upgrade() and self._should_upgrade():
            return  # a WebSocket: its own protocol takes the connection over
        self._arm(self.body_timeout, self._body_too_slow)
        # the cycle just made (its task has not run yet) writes through _Coalescing
        if self.cycle is not None and self.cycle.transport is self.transport:
            self._coalescing.expect_head()
            self.cycle.transport = self._coalescing  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        if self._accepting:
            self._moved_on()
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._accepting:
            return
        self._disarm()
        self._moved_on()
        super().on_message_complete()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "?"
