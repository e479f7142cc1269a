"""What one tenant may cost a real gateway's live stream: a stream names at most
``MAX_PROJECTS`` projectIds (an SSE query of 3,000 of them, 47 KB, is a short 400; the HTTP
parser refuses a much longer request line by itself),
and a user has at most ``streams_per_user`` streams open at once (SSE 429 with
Retry-After, WebSocket close 1013), every place given back when a client goes away, even
without a close handshake."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from tests.support.streams import RawWsClient, connect, ws_url

from gateway.routes.stream import MAX_PROJECTS

PER_USER = 2


@pytest.fixture
def gateway(procs):
    return procs.gateway(DEVTEAM_GATEWAY_STREAMS_PER_USER=str(PER_USER))


def sse_url(base: str, *projects: str) -> str:
    return f"{base}/api/devteam/stream?" + "&".join(f"projectId={p}" for p in projects)


async def closed_with(url: str) -> tuple[int, str]:
    async with websockets.connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()  # closed before any frame
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def raw_get(url: str, token: str) -> tuple[int, bytes]:
    """GET ``url`` over a bare HTTP/1.1 connection (httpx refuses URLs over 64 KiB): the
    status and the body of an answer with a length."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        status = int(head.split(b" ", 2)[1])
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        return status, await asyncio.wait_for(reader.readexactly(length), 30)
    finally:
        writer.close()


async def test_an_sse_query_of_3000_projectids_is_a_short_400(gateway, token_for) -> None:
    # Given a token granting a whole customer and a 47 KB query of distinct projectIds
    # (each followed project costs the hub an index entry and every replay page a value)
    url = sse_url(gateway.url, *(f"a/{i:x}" for i in range(3_000)))
    assert len(url) > 45_000
    status, body = await raw_get(url, token_for("mallory", ["a/*"]))
    # Then 400 naming the limit, and the detail stays short
    assert status == 400
    assert f"at most {MAX_PROJECTS} projectId values" in json.loads(body)["detail"]
    assert len(body) < 2_000


async def test_a_40kb_projectid_is_quoted_cut_short(gateway, token_for) -> None:
    status, body = await raw_get(sse_url(gateway.url, "x" * 40_000),
                                 token_for("mallory", ["a/*"]))
    assert status == 400
    assert len(json.loads(body)["detail"]) < 200


async def test_a_websocket_with_too_many_projectids_is_closed_4400(gateway, token_for) -> None:
    projects = [f"acme/p{i}" for i in range(MAX_PROJECTS + 1)]
    code, reason = await closed_with(ws_url(gateway.url, token_for("alice", ["acme/*"]),
                                            *projects))
    assert code == 4400 and str(MAX_PROJECTS) in reason


async def test_past_the_user_limit_sse_is_429_and_a_websocket_closes_1013(
        gateway, token_for) -> None:
    token = token_for("alice", ["acme/*"])
    # Given a user with as many streams open as allowed
    sockets = [await connect(ws_url(gateway.url, token, "acme/web")) for _ in range(PER_USER)]
    try:
        # When they open one more, over SSE it is 429 with when to retry
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(sse_url(gateway.url, "acme/web"),
                                        headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) > 0
        assert response.headers["Content-Type"].startswith("application/problem+json")
        # and a WebSocket is closed 1013, saying why
        code, reason = await closed_with(ws_url(gateway.url, token, "acme/web"))
        assert code == 1013 and "live streams open" in reason
        # while another user is served
        other = await connect(ws_url(gateway.url, token_for("bob", ["acme/*"]), "acme/web"))
        await other.close()
    finally:
        for ws in sockets:
            await ws.close()


async def served(url: str, seconds: float = 10.0):
    """A socket on ``url`` once the server takes one (it may first refuse with 1013 while it
    has not yet noticed earlier clients leaving)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await connect(url)
        except websockets.ConnectionClosed as exc:
            refused = exc.rcvd is not None and exc.rcvd.code == 1013
            if not refused or time.monotonic() > deadline:
                raise  # another close, or still refused long after they left
        await asyncio.sleep(0.2)


async def test_clients_that_vanish_without_closing_give_their_places_back(
        gateway, token_for) -> None:
    url = ws_url(gateway.url, token_for("alice", ["acme/*"]), "acme/web")
    for _ in range(3):  # three times the limit in all
        # Given a user whose streams all go away abruptly (TCP closed, no close frame)
        first = await served(url)  # a place is free again
        await first.close()
        clients = [await asyncio.to_thread(RawWsClient, url) for _ in range(PER_USER)]
        for client in clients:
            client.close()
    # Then the user is served again once the server has noticed: no leaked count
    ws = await served(url)
    await ws.close()


async def test_sse_streams_ended_by_the_client_give_their_places_back(
        gateway, token_for) -> None:
    headers = {"Authorization": f"Bearer {token_for('alice', ['acme/*'])}"}
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(3 * PER_USER):  # each ends before the next; never refused for long
            deadline = time.monotonic() + 10
            while True:
                async with client.stream("GET", sse_url(gateway.url, "acme/web"),
                                         headers=headers) as response:
                    if response.status_code == 200:
                        async for line in response.aiter_lines():
                            if line.startswith("event: connection-established"):
                                break
                        break
                    assert response.status_code == 429
                assert time.monotonic() < deadline, "still 429 10 s after the streams ended"
                await asyncio.sleep(0.2)
