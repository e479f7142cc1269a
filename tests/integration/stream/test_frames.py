"""Frames as a frontend reads them, over a real gateway (WebSocket and SSE): the
requirements' flat fields beside the envelope and payload, repeated updates not sent,
cursors of ASCII digits only, control frames naming the socket's project, SSE ``event:``
lines."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import text
from tests.support.streams import connect, new_execution, read_frames, write, ws_url

from pipeline import executions, stream

ENVELOPE = {"id", "type", "ts", "timestamp", "customerId", "projectId", "executionId",
            "taskId", "seq", "payload"}


@pytest.fixture
def gateway(procs):
    return procs.gateway()


async def _set(store, execution: uuid.UUID, **fields: Any) -> None:
    """Change the execution row and append its execution-update, as the pipeline does."""
    async with store.tx() as tx:
        await executions.set_fields(tx, execution, **fields)
        row = await executions.get(tx, execution)
        assert row is not None
        await stream.append(tx, execution, [("execution-update", row.update_payload())])


async def _append(store, execution: uuid.UUID, kind: str, payload: dict[str, Any]) -> None:
    async with store.tx() as tx:
        await stream.append(tx, execution, [(kind, payload)])


async def _sse(url: str, token: str, count: int, **headers: str) -> list[tuple[dict, dict]]:
    """The first ``count`` SSE events: ``({field: value}, frame)`` each."""
    events: list[tuple[dict, dict]] = []
    fields: dict[str, str] = {}
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", url, headers={"Authorization": f"Bearer {token}", **headers})
        as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line == "":
                if "data" in fields:
                    events.append((fields, json.loads(fields["data"])))
                    if len(events) == count:
                        return events
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
    return events


async def _scenario(store) -> uuid.UUID:
    """An execution 3 of 10 tasks in, verifying 1.4 on its branch, with a log line of a
    SELECT (no task) and the run's completion: frames seq 1..4 after the start."""
    execution = await new_execution(store, "acme/web")
    await _set(store, execution, status="running", current_stage="VERIFY",
               current_task_id="1.4", branch="task/1-4-add", completed_tasks=3, total_tasks=10)
    await _append(store, execution, "execution-log",
                  {"level": "info", "stage": "SELECT", "taskId": "#5", "lines": ["next"]})
    await _append(store, execution, "execution-log",
                  {"level": "info", "stage": "VERIFY", "taskId": "1.4", "lines": ["ok"]})
    await _append(store, execution, "completion",
                  {"status": "completed", "completedTasks": 10, "totalTasks": 10,
                   "durationMs": 5})
    return execution


def _check_scenario(frames: list[dict], execution: uuid.UUID) -> None:
    start, verifying, select_log, task_log, completion = frames
    for frame in frames:
        assert set(frame) >= ENVELOPE, frame
        assert frame["timestamp"] == frame["ts"] and frame["ts"].endswith("Z")
        assert (frame["customerId"], frame["projectId"], frame["executionId"]) == (
            "acme", "acme/web", str(execution))
    # the start: initializing, nothing done, no task
    assert (start["status"], start["progress"], start["taskId"]) == ("INITIALIZING", 0.0, None)
    # 3 of 10 done and the fourth being verified: the requirements' state and a number
    assert verifying["status"] == "VERIFYING" and verifying["progress"] == 36.0
    assert verifying["taskId"] == "1.4"
    # the detailed payload is still there for existing clients
    assert verifying["payload"]["status"] == "running"
    assert verifying["payload"]["stage"] == "VERIFY"
    assert verifying["payload"]["branch"] == "task/1-4-add"
    assert verifying["payload"]["progress"] == 30
    # other frames: taskId at the top level (null for none), no status/progress
    assert select_log["taskId"] is None and task_log["taskId"] == "1.4"
    assert completion["taskId"] is None
    for frame in (select_log, task_log, completion):
        assert "status" not in frame and "progress" not in frame


async def test_websocket_frames_carry_the_requirements_fields_at_the_top_level(
    store, gateway, token_for
) -> None:
    execution = await _scenario(store)
    ws = await connect(ws_url(gateway.url, token_for("alice", ["acme/*"]), "acme/web",
                              since="0"))
    frames = await read_frames(ws, 5)
    await ws.close()
    assert [f["seq"] for f in frames] == [1, 2, 3, 4, 5]
    _check_scenario(frames, execution)


async def test_sse_sends_the_same_frames_each_with_an_event_line_naming_its_type(
    store, gateway, token_for
) -> None:
    execution = await _scenario(store)
    token = token_for("alice", ["acme/*"])
    events = await _sse(f"{gateway.url}/api/devteam/stream?projectId=acme/web&since=0",
                        token, 6)
    # every event, connection-established included, has `event: <its type>`, so a
    # browser's addEventListener(type) receives it
    for fields, frame in events:
        assert fields["event"] == frame["type"]
    assert events[0][1]["type"] == "connection-established"
    frames = [frame for _, frame in events[1:]]
    assert [fields["id"] for fields, _ in events[1:]] == [f["id"] for f in frames]
    _check_scenario(frames, execution)
    # byte for byte what the WebSocket sends
    ws = await connect(ws_url(gateway.url, token, "acme/web", since="0"))
    assert await read_frames(ws, 5) == frames
    await ws.close()


async def test_an_update_identical_to_the_previous_one_is_not_sent(
    store, gateway, token_for
) -> None:
    execution = await new_execution(store, "acme/web")
    ws = await connect(ws_url(gateway.url, token_for("alice", ["acme/*"]), "acme/web"))
    # When the same state is announced three times (a stage that changed nothing a client
    # sees), then something changes
    await _set(store, execution, status="running", current_stage="SELECT", total_tasks=3)
    await _set(store, execution, status="running", current_stage="SELECT", total_tasks=3)
    await _set(store, execution, current_stage="SELECT")
    await write(store, execution, 1)
    await _set(store, execution, current_stage="PREP", current_task_id="1.1")
    frames = await read_frames(ws, 3)
    await ws.close()
    # Then the repeats took no place in the stream: seq stays gapless
    assert [(f["type"], f["seq"]) for f in frames] == [
        ("execution-update", 2), ("execution-log", 3), ("execution-update", 4)]
    assert [f.get("status") for f in frames] == ["SELECTING", None, "PREPARING"]
    assert frames[2]["progress"] == 1.7  # 5% of one task of 3, one decimal
    async with store.transaction() as session:
        updates = (await session.execute(text(
            "SELECT count(*) FROM notifications WHERE execution_id = :e "
            "AND type = 'execution-update'"), {"e": execution})).scalar_one()
    assert updates == 3  # the start, SELECTING, PREPARING


@pytest.mark.parametrize("since", ["%C2%B2", "%D9%A3", "%EF%BC%91", "1%C2%B2", "-1", "%2B1"])
async def test_a_cursor_of_anything_but_ascii_digits_is_refused_not_a_server_error(
    gateway, token_for, since
) -> None:
    # "²" (superscript two), "٣" (Arabic-Indic three) and "１" (fullwidth one) all pass
    # str.isdigit(); only 0-9 make a cursor
    token = token_for("alice", ["acme/*"])
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{gateway.url}/api/devteam/stream?since={since}",
                                  headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["errors"] == [{"field": "since", "message": "invalid cursor"}]
        # the same in Last-Event-ID ("²" is one Latin-1 byte in a header)
        raw = httpx.URL(f"http://x/?v={since}").params["v"]
        try:
            value = raw.encode("latin-1")
        except UnicodeEncodeError:
            value = raw.encode("utf-8")
        answer = await client.get(
            f"{gateway.url}/api/devteam/stream",
            headers=[(b"Authorization", f"Bearer {token}".encode()),
                     (b"Last-Event-ID", value)])
        assert answer.status_code == 400, answer.text
    async with websockets.connect(f"{ws_url(gateway.url, token)}&since={since}") as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
    assert "since" in closed.value.rcvd.reason


async def test_control_frames_name_the_project_the_socket_is_scoped_to(
    store, gateway, token_for
) -> None:
    execution = await new_execution(store, "acme/web")
    async with store.transaction() as session:
        first = (await session.execute(text(
            "SELECT min(pos) FROM notifications WHERE execution_id = :e"),
            {"e": execution})).scalar_one()
        # retention went past the start: a client resuming from before it is told resync
        await session.execute(text("UPDATE stream_position SET pruned_pos = :p WHERE id = 1"),
                              {"p": first})
    token = token_for("alice", ["acme/*"])
    scoped = await websockets.connect(ws_url(gateway.url, token, "acme/web", since="0"))
    everything = await websockets.connect(ws_url(gateway.url, token, since="0"))
    for ws, project, customer in ((scoped, "acme/web", "acme"), (everything, None, None)):
        await ws.send("{not json")
        await ws.send(json.dumps({"type": "ping"}))
        frames = await read_frames(ws, 6)
        await ws.close()
        control = [f for f in frames if f["id"] is None]
        # the replay and the replies to the client's frames may interleave
        assert control[0]["type"] == "connection-established"
        assert sorted(f["type"] for f in control) == ["connection-established", "error",
                                                      "pong", "replay-complete", "resync"], frames
        for frame in control:
            assert set(frame) >= ENVELOPE
            assert frame["projectId"] == project and frame["customerId"] == customer, frame
            assert frame["executionId"] is None and frame["taskId"] is None
            assert frame["timestamp"] == frame["ts"]
    # SSE's control frames too
    events = await _sse(f"{gateway.url}/api/devteam/stream?projectId=acme/web&since=0",
                        token, 4)
    assert [(fields["event"], frame["projectId"]) for fields, frame in events] == [
        ("connection-established", "acme/web"), ("resync", "acme/web"),
        ("execution-update", "acme/web"), ("replay-complete", "acme/web")]
