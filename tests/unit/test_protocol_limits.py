"""What a client can make the gateway's HTTP protocol hold is bounded: trailer fields are
dropped and a request that goes on sending them is refused, the requests queued behind a
response under way (pipelining) are capped, and so are a request's header fields; the
protocol's own refusal is never written into the middle of a response.

Driven through the real ``DeadlineHttpProtocol`` and uvicorn's cycle, on a transport that
records its writes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.support.http_protocol import Recording, connect, settle

from gateway.protocol import (
    MAX_HEADER_FIELDS,
    MAX_HEADER_READ,
    MAX_PIPELINED,
    MAX_TRAILER_READ,
    DeadlineHttpProtocol,
)

CHUNKED = (b"POST /events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
           b"Content-Type: application/json\r\n\r\n2\r\n{}\r\n0\r\n")
GET = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"
READ = 1000  # bytes per read in the floods below
FLOOD = 1024 * 1024  # what a flood sends at most when nothing stops it


def reading_app(seen: list[dict[str, Any]]) -> Any:
    """Reads the whole body, then answers 200 ``ok``; records what it saw."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                seen.append({"disconnected": True})
                return
            body += message["body"]
            if not message["more_body"]:
                break
        seen.append({"body": body, "headers": [name for name, _ in scope["headers"]]})
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def flood(protocol: DeadlineHttpProtocol, transport: Recording, read: bytes) -> int:
    """Send ``read`` again and again until the connection is closed (or ``FLOOD`` bytes
    went); the bytes sent."""
    sent = 0
    while not transport.closed and sent < FLOOD:
        protocol.data_received(read)
        sent += len(read)
    return sent


def problem(transport: Recording) -> tuple[bytes, dict[str, Any]]:
    """The status line and the problem+json body of the one answer written."""
    head, _, body = transport.sent.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head
    return head.split(b"\r\n", 1)[0], json.loads(body)


async def test_given_a_chunked_body_with_trailers_then_they_never_reach_the_request_headers(
) -> None:
    seen: list[dict[str, Any]] = []
    protocol, transport = connect(reading_app(seen))
    # When a request's chunked body ends with trailer fields
    protocol.data_received(CHUNKED + b"X-Checksum: abc\r\nX-Other: 1\r\n\r\n")
    await settle()
    # Then the application has its body and only the headers sent before it
    assert seen == [{"body": b"{}",
                     "headers": [b"host", b"transfer-encoding", b"content-type"]}]
    assert transport.sent.startswith(b"HTTP/1.1 200 OK\r\n")
    protocol.connection_lost(None)


async def test_given_endless_trailer_lines_then_the_request_is_a_431_and_closed() -> None:
    seen: list[dict[str, Any]] = []
    protocol, transport = connect(reading_app(seen))
    protocol.data_received(CHUNKED)
    await settle()  # the application waits for the end of the body
    # When the client sends trailer lines without end
    sent = flood(protocol, transport, b"a:b\r\n" * (READ // 5))
    # Then the connection was closed once the limit was passed, with a 431
    assert transport.closed
    assert sent <= MAX_TRAILER_READ + READ
    status, body = problem(transport)
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert body["status"] == 431
    assert str(MAX_TRAILER_READ) in body["detail"]
    # and the application saw the client gone (it wrote nothing after the 431)
    await settle()
    assert seen == [{"disconnected": True}]
    protocol.connection_lost(None)


async def test_given_one_endless_trailer_line_then_the_request_is_refused() -> None:
    seen: list[dict[str, Any]] = []
    protocol, transport = connect(reading_app(seen))
    protocol.data_received(CHUNKED + b"X-Long: ")
    await settle()
    # When one trailer field never ends (httptools keeps all of it until its line ends)
    sent = flood(protocol, transport, b"a" * READ)
    # Then it is refused all the same
    assert transport.closed
    assert sent <= MAX_TRAILER_READ + READ
    assert problem(transport)[0].startswith(b"HTTP/1.1 431 ")
    protocol.connection_lost(None)


async def test_given_an_answered_request_then_endless_trailers_close_it_without_a_second_answer(
) -> None:
    async def unauthorised(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    protocol, transport = connect(unauthorised)
    protocol.data_received(CHUNKED)
    await settle()
    assert transport.sent.startswith(b"HTTP/1.1 401 ")  # answered before the body ended
    # When the client goes on sending trailer lines
    sent = flood(protocol, transport, b"a:b\r\n" * (READ // 5))
    # Then the connection is closed, and the 401 stays its only answer
    assert transport.closed
    assert sent <= MAX_TRAILER_READ + READ
    assert transport.sent.count(b"HTTP/1.1 ") == 1
    protocol.connection_lost(None)


def streaming_app(release: asyncio.Event) -> Any:
    """``/stream`` sends a frame and lasts until ``release``; anything else is 200 ``ok``."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
            await release.wait()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


STREAM = b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_given_a_stream_then_at_most_max_pipelined_requests_queue_behind_it() -> None:
    release = asyncio.Event()
    protocol, transport = connect(streaming_app(release))
    # When a client opens a stream and pipelines thousands of requests behind it in one
    # read, then more in the next
    protocol.data_received(STREAM + GET * 5000)
    await settle()
    protocol.data_received(GET * 100)
    await settle()
    # Then MAX_PIPELINED requests are held while the stream lasts, and it goes on
    assert len(protocol.pipeline) == MAX_PIPELINED
    assert not transport.closed
    assert transport.sent.count(b"HTTP/1.1 200 OK\r\n") == 1
    assert b"data: 1\n\n" in transport.sent
    # and when the stream ends, those queued are answered and the last closes the connection
    release.set()
    for _ in range(10 * MAX_PIPELINED):
        if transport.closed:
            break
        await asyncio.sleep(0)
    assert transport.closed
    responses = transport.sent.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(responses) == 1 + MAX_PIPELINED
    assert b"connection: close\r\n" in responses[-1]
    assert all(b"connection: close" not in r for r in responses[:-1])
    protocol.connection_lost(None)


def request_with_fields(count: int) -> bytes:
    return (b"GET /x HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"x-%d: 1\r\n" % i for i in range(count - 1)) + b"\r\n")


async def test_given_more_header_fields_than_the_limit_then_the_request_is_a_431() -> None:
    seen: list[dict[str, Any]] = []
    protocol, transport = connect(reading_app(seen))
    # When a request has exactly the limit of header fields, then one that has one more
    protocol.data_received(request_with_fields(MAX_HEADER_FIELDS))
    await settle()
    assert len(seen) == 1 and len(seen[0]["headers"]) == MAX_HEADER_FIELDS
    assert transport.sent.startswith(b"HTTP/1.1 200 OK\r\n")
    transport.writes.clear()
    protocol.data_received(request_with_fields(MAX_HEADER_FIELDS + 1))
    await settle()
    # Then the first is served, and the second refused before the application sees it
    assert len(seen) == 1
    assert transport.closed
    status, body = problem(transport)
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert str(MAX_HEADER_FIELDS) in body["detail"]
    protocol.connection_lost(None)


async def test_given_endless_tiny_header_lines_then_few_are_kept_and_the_request_is_a_431(
) -> None:
    protocol, transport = connect(reading_app([]))
    protocol.data_received(b"GET /x HTTP/1.1\r\nHost: x\r\n")
    # When the client sends header lines of a few bytes without end
    sent = flood(protocol, transport, b"a:b\r\n" * (READ // 5))
    # Then it is refused after about MAX_HEADER_FIELDS of them, long before MAX_HEADER_READ
    assert transport.closed
    assert sent <= 5 * MAX_HEADER_FIELDS + READ < MAX_HEADER_READ
    assert problem(transport)[0].startswith(b"HTTP/1.1 431 ")
    protocol.connection_lost(None)


async def test_given_a_stream_then_a_refused_request_behind_it_is_not_answered_into_it() -> None:
    release = asyncio.Event()
    protocol, transport = connect(streaming_app(release))
    protocol.data_received(STREAM)
    await settle()
    # When a request pipelined behind the stream grows its headers past MAX_HEADER_READ
    protocol.data_received(b"GET /x HTTP/1.1\r\nHost: x\r\nX-Junk: ")
    flood(protocol, transport, b"j" * 65536)
    # Then the connection is closed, and nothing but the stream was written to it
    assert transport.closed
    assert transport.sent.count(b"HTTP/1.1 ") == 1
    assert b"431" not in transport.sent
    release.set()
    protocol.connection_lost(None)
    await settle()
