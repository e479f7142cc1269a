"""The WebSocket stream over a real gateway process: frames, replay, filters, isolation."""

from __future__ import annotations

import json

import pytest
import websockets
from tests.support.streams import (
    connect,
    new_execution,
    read_frames,
    split_backlog,
    write,
    ws_url,
)


@pytest.fixture
def gateway(procs):
    return procs.gateway()


async def test_frames_arrive_in_order_with_the_envelope(store, gateway, token_for) -> None:
    # Given a client watching acme/web
    execution = await new_execution(store, "acme/web")
    ws = await connect(ws_url(gateway.url, token_for("alice", ["acme/*"]), "acme/web"))
    # When three notifications are written
    await write(store, execution, 3)
    frames = await read_frames(ws, 3)
    await ws.close()
    # Then they arrive in order, with seq 2..4 (seq 1 is the start) and the full envelope
    assert [f["seq"] for f in frames] == [2, 3, 4]
    assert [f["payload"]["lines"] for f in frames] == [["line 0"], ["line 1"], ["line 2"]]
    first = frames[0]
    assert set(first) == {
        "id",
        "type",
        "ts",
        "timestamp",
        "customerId",
        "projectId",
        "executionId",
        "taskId",
        "seq",
        "payload",
    }
    assert first["timestamp"] == first["ts"] and first["taskId"] == "1"
    assert first["customerId"] == "acme" and first["projectId"] == "acme/web"
    assert first["executionId"] == str(execution) and first["ts"].endswith("Z")


async def test_reconnecting_with_since_replays_the_gap_without_duplicates(
    store, gateway, token_for
) -> None:
    execution = await new_execution(store, "acme/web")
    token = token_for("alice", ["acme/*"])
    ws = await connect(ws_url(gateway.url, token, "acme/web"))
    await write(store, execution, 2)
    seen = await read_frames(ws, 2)
    await ws.close()
    # While the client is away, more happens
    await write(store, execution, 5)
    ws = await connect(ws_url(gateway.url, token, "acme/web", since=seen[-1]["id"]))
    await write(store, execution, 1)
    backlog, marker, live = split_backlog(await read_frames(ws, 7))
    await ws.close()
    assert [f["seq"] for f in seen + backlog + live] == list(range(2, 10))
    assert marker["payload"]["replayed"] == len(backlog)


async def test_since_replays_history_from_before_the_first_connection(
    store, gateway, token_for
) -> None:
    execution = await new_execution(store, "acme/web")
    await write(store, execution, 4)
    ws = await connect(ws_url(gateway.url, token_for("alice", ["acme/web"]), "acme/web", since="0"))
    frames = await read_frames(ws, 5)
    await ws.close()
    assert [f["seq"] for f in frames] == [1, 2, 3, 4, 5]


async def test_a_customer_never_sees_another_customers_frames(store, gateway, token_for) -> None:
    mine = await new_execution(store, "acme/web")
    theirs = await new_execution(store, "globex/api")
    token = token_for("alice", ["acme/*"])
    unfiltered = await connect(ws_url(gateway.url, token))
    filtered = await connect(ws_url(gateway.url, token, "acme/web"))
    await write(store, theirs, 3)
    await write(store, mine, 2)
    for ws in (unfiltered, filtered):
        frames = await read_frames(ws, 2)
        assert {f["projectId"] for f in frames} == {"acme/web"}
        with pytest.raises(TimeoutError):
            await read_frames(ws, 1, timeout=0.5)
        await ws.close()


async def test_asking_for_a_project_not_granted_closes_with_4403(gateway, token_for) -> None:
    url = ws_url(gateway.url, token_for("alice", ["acme/*"]), "globex/api")
    async with websockets.connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 4403


@pytest.mark.parametrize("token", ["", "not-a-jwt"])
async def test_a_bad_token_closes_with_4401(gateway, token) -> None:
    async with websockets.connect(ws_url(gateway.url, token)) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 4401


async def test_types_and_level_filters(store, gateway, token_for) -> None:
    execution = await new_execution(store, "acme/web")
    token = token_for("alice", ["acme/*"])
    only_errors = await connect(
        ws_url(gateway.url, token, "acme/web", types="execution-log", level="error")
    )
    await write(store, execution, 2, level="info")
    await write(store, execution, 1, level="error")
    await write(store, execution, 1, kind="execution-update")
    frames = await read_frames(only_errors, 1)
    assert frames[0]["payload"]["level"] == "error"
    with pytest.raises(TimeoutError):
        await read_frames(only_errors, 1, timeout=0.5)
    await only_errors.close()


async def test_bad_client_frames_get_an_error_frame_and_the_socket_stays_open(
    store, gateway, token_for
) -> None:
    execution = await new_execution(store, "acme/web")
    ws = await connect(ws_url(gateway.url, token_for("alice", ["acme/*"]), "acme/web"))
    await ws.send("{not json")
    await ws.send(json.dumps({"type": "ping", "pad": "x" * 11_000}))
    await ws.send(json.dumps({"type": "ping"}))
    replies = await read_frames(ws, 3)
    assert [r["type"] for r in replies] == ["error", "error", "pong"]
    assert "10 KB" in replies[1]["payload"]["message"]
    await write(store, execution, 1)
    assert (await read_frames(ws, 1))[0]["seq"] == 2
    await ws.close()
