"""Live frames from a real gateway, over WebSocket and SSE, checked with ``jsonschema``
against the AsyncAPI document that same gateway serves at ``/schema/asyncapi.json``.

The notifications are written by the pipeline's own producers where one runs outside a
stage (starting an execution, the execution row's updates, the stage log sink) and in the
shape the finish transaction writes otherwise (error, completion); the control frames are
the gateway's answers to a real client (ping, a malformed and an oversized frame, a
cursor behind retention's watermark)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import text
from tests.support.asyncapi import check_frame, spec_errors
from tests.support.streams import new_execution, ws_url

from pipeline import executions, stream
from pipeline.logsink import LogSink
from runner.redact import Redactor


@pytest.fixture
def gateway(procs):
    return procs.gateway()


async def _served(url: str, **headers: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{url}/schema/asyncapi.json", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    return answer.json()


async def test_the_document_is_served_without_a_token_and_is_asyncapi_3(gateway) -> None:
    doc = await _served(gateway.url)
    assert doc["asyncapi"] == "3.0.0"
    assert spec_errors(doc) == []
    assert {c["address"] for c in doc["channels"].values()} == {"/ws/devteam",
                                                                "/api/devteam/stream"}
    # a token that is not valid changes nothing: the document is public, like OpenAPI's
    assert await _served(gateway.url, Authorization="Bearer nonsense") == doc


async def _update(store, execution: uuid.UUID, **fields: Any) -> None:
    async with store.tx() as tx:
        await executions.set_fields(tx, execution, **fields)
        row = await executions.get(tx, execution)
        assert row is not None
        await stream.append(tx, execution, [("execution-update", row.update_payload())])


async def _append(store, execution: uuid.UUID, kind: str, payload: dict[str, Any]) -> None:
    async with store.tx() as tx:
        await stream.append(tx, execution, [(kind, payload)])


async def _run(store, execution: uuid.UUID) -> None:
    """Two tasks' worth of an execution: updates, logs, a pause, an error, completion."""
    await _update(store, execution, status="running", current_stage="SELECT",
                  current_task_id="#1", total_tasks=2)
    await _update(store, execution, current_stage="VERIFY", current_task_id="1.1",
                  branch="task/1-1-add")
    sink = LogSink(store, Redactor(), execution_id=execution, stage="VERIFY", task_id="1.1",
                   flush_ms=50, batch_lines=200)
    sink.start()
    sink.sink()("npm test")
    sink.line("1 failing", "warning")
    await sink.close()
    await _append(store, execution, "error", {
        "errorId": str(uuid.uuid4()), "stage": "VERIFY", "taskId": "1.1",
        "classification": "verification", "message": "tests failed"})
    await _update(store, execution, status="paused", pause_reason="human_review")
    await _update(store, execution, status="running", pause_reason=None,
                  current_stage="MERGE", completed_tasks=1)
    await _update(store, execution, status="completed", current_stage="FINALIZE",
                  current_task_id=None, branch=None, completed_tasks=2)
    await _append(store, execution, "completion", {
        "status": "completed", "completedTasks": 2, "totalTasks": 2, "durationMs": 5100})


async def _read_until(ws: Any, done: Any, timeout: float = 20.0) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not done(frames):
            frames.append(json.loads(await ws.recv()))
    return frames


def _complete(frames: list[dict[str, Any]]) -> bool:
    """The completion and the answers to the client's three frames have arrived."""
    kinds = [f["type"] for f in frames]
    return "completion" in kinds and kinds.count("pong") == 1 and sum(
        1 for f in frames if f["type"] == "error" and f["id"] is None) == 2


async def test_live_frames_on_websocket_and_sse_are_the_served_documents_messages(
    store, gateway, token_for
) -> None:
    doc = await _served(gateway.url)
    token = token_for("alice", ["acme/*"])
    scoped = await websockets.connect(ws_url(gateway.url, token, "acme/web"), max_size=2**22)
    everything = await websockets.connect(ws_url(gateway.url, token), max_size=2**22)
    execution = await new_execution(store, "acme/web")
    await _run(store, execution)
    seen: dict[str, set[str]] = {"stream": set(), "events": set()}

    # Live on two sockets (scoped to the project, and every project the token grants),
    # each also sending a ping, a malformed frame and one over 10 KB
    for ws in (scoped, everything):
        await ws.send(json.dumps({"type": "ping"}))
        await ws.send("{not json")
        await ws.send(json.dumps({"type": "ping", "pad": "x" * 11_000}))
        frames = await _read_until(ws, _complete)
        await ws.close()
        for frame in frames:
            seen["stream"].add(check_frame(doc, "stream", frame))
        assert [f["seq"] for f in frames if f["id"] is not None] == list(
            range(1, 1 + sum(1 for f in frames if f["id"] is not None)))
    assert seen["stream"] == {"connectionEstablished", "executionUpdate", "executionLog",
                              "executionError", "completion", "pong", "streamError",
                              "replayComplete"}

    # Replayed after retention's watermark passed the client's cursor: resync first
    async with store.transaction() as session:
        stored = (await session.execute(text(
            "SELECT min(pos), count(*) FROM notifications WHERE execution_id = :e"),
            {"e": execution})).one()
        await session.execute(text("UPDATE stream_position SET pruned_pos = :p WHERE id = 1"),
                              {"p": stored[0]})
    replay = await websockets.connect(ws_url(gateway.url, token, "acme/web", since="0"),
                                      max_size=2**22)
    frames = await _read_until(replay, lambda fs: any(f["type"] == "completion" for f in fs))
    await replay.close()
    assert [f["type"] for f in frames[:2]] == ["connection-established", "resync"]
    assert frames[0]["payload"]["resumedFrom"] == "0"
    for frame in frames:
        seen["stream"].add(check_frame(doc, "stream", frame))
    assert "resync" in seen["stream"]

    # The same over Server-Sent Events, resuming with Last-Event-ID
    events: list[tuple[dict[str, str], dict[str, Any]]] = []
    fields: dict[str, str] = {}
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", f"{gateway.url}/api/devteam/stream?projectId=acme/web",
                      headers={"Authorization": f"Bearer {token}", "Last-Event-ID": "0"})
        as answer,
    ):
        assert answer.status_code == 200
        async for line in answer.aiter_lines():
            if line == "":
                if "data" in fields:
                    events.append((fields, json.loads(fields["data"])))
                    if events[-1][1]["type"] == "replay-complete":
                        break
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
    # connection-established, resync, every frame kept, then replay-complete
    assert len(events) == 3 + stored[1]
    assert events[-1][1]["payload"]["replayed"] == stored[1]
    for fields, frame in events:
        seen["events"].add(check_frame(doc, "events", frame))
        assert fields["event"] == frame["type"]
        assert fields.get("id") == frame["id"]  # stored frames only carry a cursor
    assert seen["events"] == {"connectionEstablished", "resync", "executionUpdate",
                              "executionLog", "executionError", "completion",
                              "replayComplete"}
