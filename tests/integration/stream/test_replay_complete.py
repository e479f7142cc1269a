"""The end-of-backlog marker (``replay-complete``) over a real gateway, WebSocket and SSE,
with and without a cursor: it comes exactly once, after the last replayed frame and before
the first live one, carries the cursor the client is caught up to (resuming from it
repeats and misses nothing) and the project the socket is scoped to, and every frame
around it is a message of the AsyncAPI document the same gateway serves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import text
from tests.support.asyncapi import check_frame
from tests.support.streams import new_execution, read_frames, split_backlog, write, ws_url


@pytest.fixture
def gateway(procs):
    return procs.gateway()


async def _document(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{url}/schema/asyncapi.json")
    assert answer.status_code == 200
    return answer.json()


async def _head(store) -> int:
    async with store.transaction() as session:
        return int((await session.execute(text(
            "SELECT pos FROM stream_position WHERE id = 1"))).scalar_one())


async def _open(url: str) -> Any:
    return await websockets.connect(url, open_timeout=10, max_size=2**22, max_queue=None)


@contextlib.asynccontextmanager
async def _writing(store, execution: uuid.UUID) -> AsyncIterator[list[int]]:
    """Append log frames one transaction at a time until the block ends; yields the count
    written so far (one element, updated)."""
    written = [0]
    stop = asyncio.Event()

    async def run() -> None:
        while not stop.is_set():
            await write(store, execution, 1)
            written[0] += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(run())
    try:
        yield written
    finally:
        stop.set()
        await task


async def test_without_a_cursor_the_marker_follows_the_greeting_at_once(
    store, gateway, token_for
) -> None:
    doc = await _document(gateway.url)
    execution = await new_execution(store, "acme/web")
    await write(store, execution, 3)  # history a client without a cursor does not get
    head = await _head(store)
    token = token_for("alice", ["acme/*"])
    scoped = await _open(ws_url(gateway.url, token, "acme/web"))
    everything = await _open(ws_url(gateway.url, token))
    for ws, project, customer in ((scoped, "acme/web", "acme"), (everything, None, None)):
        hello, marker = await read_frames(ws, 2)
        assert (hello["type"], marker["type"]) == ("connection-established", "replay-complete")
        assert marker["payload"] == {"cursor": str(head), "replayed": 0}
        assert (marker["projectId"], marker["customerId"]) == (project, customer)
        assert marker["id"] is None and marker["seq"] is None and marker["executionId"] is None
        assert check_frame(doc, "stream", marker) == "replayComplete"
    # Then live frames follow, after the cursor, and the marker does not come again
    await write(store, execution, 2)
    for ws in (scoped, everything):
        live = await read_frames(ws, 2)
        assert [f["seq"] for f in live] == [5, 6]
        assert all(int(f["id"]) > head for f in live)
        await ws.send(json.dumps({"type": "ping"}))
        assert [f["type"] for f in await read_frames(ws, 1)] == ["pong"]
        await ws.close()


async def test_with_a_cursor_the_marker_ends_the_backlog_and_resuming_from_it_repeats_nothing(
    store, gateway, token_for
) -> None:
    doc = await _document(gateway.url)
    mine = await new_execution(store, "acme/web")
    theirs = await new_execution(store, "globex/api")
    await write(store, mine, 3)
    await write(store, theirs, 2)  # after mine: frames this socket may not see
    head = await _head(store)
    token = token_for("alice", ["acme/*"])
    ws = await _open(ws_url(gateway.url, token, "acme/web", since="0"))
    frames = await read_frames(ws, 1 + 4 + 1)
    hello, backlog = frames[0], frames[1:5]
    assert hello["payload"]["resumedFrom"] == "0"
    assert [f["seq"] for f in backlog] == [1, 2, 3, 4]
    marker = frames[5]
    assert marker["type"] == "replay-complete"
    # caught up to the stream's head, past the other customer's frames it never saw
    assert marker["payload"] == {"cursor": str(head), "replayed": 4}
    assert marker["projectId"] == "acme/web"
    # Then a live frame, and no second marker
    await write(store, mine, 1)
    (live,) = await read_frames(ws, 1)
    assert live["seq"] == 5 and int(live["id"]) > head
    await ws.close()
    for frame in frames + [live]:
        check_frame(doc, "stream", frame)
    # Resuming from the marker's cursor: no backlog, nothing repeated, the next frame live
    ws = await _open(ws_url(gateway.url, token, "acme/web", since=marker["payload"]["cursor"]))
    hello, replayed, again = await read_frames(ws, 3)
    await ws.close()
    assert hello["payload"]["resumedFrom"] == marker["payload"]["cursor"]
    assert replayed == live  # only the frame that came after the marker, byte for byte
    assert again["type"] == "replay-complete"
    assert again["payload"] == {"cursor": live["id"], "replayed": 1}


async def test_with_frames_written_during_the_replay_it_comes_once_between_backlog_and_live(
    store, gateway, token_for
) -> None:
    execution = await new_execution(store, "acme/web")
    await write(store, execution, 40)
    token = token_for("alice", ["acme/*"])
    async with _writing(store, execution) as written:
        ws = await _open(ws_url(gateway.url, token, "acme/web", since="0"))
        frames = await read_frames(ws, 1 + 41 + 1 + 10, timeout=30)
        hello = frames[0]
        assert hello["type"] == "connection-established"
        # keep reading until everything written so far has arrived
    total = 41 + written[0]
    frames += await read_frames(ws, total - 51, timeout=30)
    await ws.close()
    backlog, marker, live = split_backlog(frames[1:])
    # every frame once, in order, whichever side of the marker it fell on
    assert [f["seq"] for f in backlog + live] == list(range(1, total + 1))
    assert marker["payload"]["replayed"] == len(backlog) >= 41
    assert int(marker["payload"]["cursor"]) >= int(backlog[-1]["id"])
    assert all(int(f["id"]) > int(marker["payload"]["cursor"]) for f in live)


async def test_filters_do_not_hold_the_marker_back(store, gateway, token_for) -> None:
    execution = await new_execution(store, "acme/web")
    await write(store, execution, 2, level="info")
    await write(store, execution, 1, level="error")
    token = token_for("alice", ["acme/*"])
    ws = await _open(ws_url(gateway.url, token, "acme/web", since="0", types="execution-log",
                            level="error"))
    hello, only, marker = await read_frames(ws, 3)
    await ws.close()
    assert only["payload"]["level"] == "error"
    # replayed counts what this socket was sent, not what it skipped
    assert (marker["type"], marker["payload"]["replayed"]) == ("replay-complete", 1)
    assert int(marker["payload"]["cursor"]) >= int(only["id"])


@pytest.mark.parametrize("resume", ["since", "Last-Event-ID", None])
async def test_sse_sends_the_marker_as_its_own_event_without_an_id(
    store, gateway, token_for, resume
) -> None:
    doc = await _document(gateway.url)
    execution = await new_execution(store, "acme/web")
    await write(store, execution, 2)
    head = await _head(store)
    token = token_for("alice", ["acme/*"])
    url = f"{gateway.url}/api/devteam/stream?projectId=acme/web"
    headers = {"Authorization": f"Bearer {token}"}
    if resume == "since":
        url += "&since=0"
    elif resume == "Last-Event-ID":
        headers["Last-Event-ID"] = "0"
    backlog = 3 if resume else 0
    events: list[tuple[dict[str, str], dict[str, Any]]] = []
    fields: dict[str, str] = {}
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", url, headers=headers) as response,
        asyncio.timeout(20),
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line == "":
                if "data" in fields:
                    events.append((fields, json.loads(fields["data"])))
                    if events[-1][1]["type"] == "replay-complete":
                        await write(store, execution, 1)  # one live frame after it
                    elif events[-1][1].get("seq") == 4:
                        break
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
    types = [frame["type"] for _, frame in events]
    assert types[0] == "connection-established"
    assert types.count("replay-complete") == 1
    at = types.index("replay-complete")
    marker_fields, marker = events[at]
    assert marker_fields["event"] == "replay-complete" and "id" not in marker_fields
    assert marker["payload"] == {"cursor": str(head), "replayed": backlog}
    assert marker["projectId"] == "acme/web"
    assert [f["seq"] for _, f in events[1:at]] == list(range(1, backlog + 1))
    assert [f["seq"] for _, f in events[at + 1:]] == [4]
    for event_fields, frame in events:
        assert event_fields["event"] == frame["type"]
        assert event_fields.get("id") == frame["id"]
        check_frame(doc, "events", frame)
