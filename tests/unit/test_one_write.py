"""uvicorn's response cycle writes through ``gateway.protocol._Coalescing``: a small
response leaves in one write (status line, headers and body: one ``send``, one TCP
segment; uvicorn alone writes the head and the body apart), with nothing held past that
step: a stream's head goes out with its first frame or at the end of the step, a
``100 Continue`` at once, and a close sends what is held first.

Driven through the real ``DeadlineHttpProtocol`` and uvicorn's cycle, on a transport that
records its writes."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.http_protocol import Recording, connect


async def serve_one(app: Any, request: bytes, until: asyncio.Event) -> Recording:
    protocol, transport = connect(app)
    protocol.data_received(request)
    await asyncio.wait_for(until.wait(), 5)
    for _ in range(3):  # the steps that send what the last one wrote
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport


GET = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_a_small_response_leaves_in_one_write() -> None:
    done = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", b"11")]})
        await send({"type": "http.response.body", "body": b'{"ok":true}'})
        done.set()

    transport = await serve_one(app, GET, done)
    assert len(transport.writes) == 1, transport.writes
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 11" in head
    assert body == b'{"ok":true}'


async def test_a_stream_writes_each_step_without_waiting_for_the_next() -> None:
    first_out, go_on, done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    seen: list[list[bytes]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        first_out.set()
        await go_on.wait()
        await send({"type": "http.response.body", "body": b"data: 2\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        done.set()

    async def watch(transport_of: list[Recording]) -> None:
        await first_out.wait()
        for _ in range(3):
            await asyncio.sleep(0)
        seen.append(list(transport_of[0].writes))  # before the stream's next step
        go_on.set()

    protocol, transport = connect(app)
    protocol.data_received(GET)
    await asyncio.wait_for(asyncio.gather(watch([transport]), done.wait()), 5)
    for _ in range(3):
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    # the head and the first frame left together, at the end of their step, and before
    # the stream went on
    assert len(seen[0]) == 1
    assert seen[0][0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert seen[0][0].endswith(b"data: 1\n\n\r\n")  # chunked: size, data, CRLF
    rest = b"".join(transport.writes[1:])
    assert b"data: 2\n\n" in rest and rest.endswith(b"0\r\n\r\n")


async def test_a_response_that_closes_the_connection_is_sent_before_the_close() -> None:
    done = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": b"ok"})
        done.set()

    transport = await serve_one(app, GET, done)
    assert transport.closed
    assert len(transport.writes) == 1
    assert transport.writes[0].endswith(b"\r\n\r\nok")


async def test_a_100_continue_is_not_held_for_the_response() -> None:
    asked, done = asyncio.Event(), asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        asked.set()
        message = await receive()  # the client waits for the 100 before sending its body
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(message["body"])).encode())]})
        await send({"type": "http.response.body", "body": message["body"]})
        done.set()

    protocol, transport = connect(app)
    protocol.data_received(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                           b"Expect: 100-continue\r\n\r\n")
    await asyncio.wait_for(asyncio.shield(asked.wait()), 5)
    for _ in range(3):
        await asyncio.sleep(0)
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]  # sent, not held
    protocol.data_received(b"hi")
    await asyncio.wait_for(done.wait(), 5)
    protocol.connection_lost(None)
    assert len(transport.writes) == 2
    assert transport.writes[1].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[1].endswith(b"\r\n\r\nhi")
