"""Retention against the real database and a real gateway: the reaper's pruning pass
(pipeline/retention.py) removes old notifications, stage runs and stage outputs in batches,
keeps each execution's summary and error records, and a client whose cursor is older than
what was kept is told ``resync`` instead of silently missing frames."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from tests.support.settings import use_settings
from tests.support.streams import connect, new_execution, read_frames, write, ws_url

from pipeline.retention import prune_old_records
from runner.settings import get_settings

OLD = timedelta(days=40)
CONTEXT = {
    "nodes": {
        "VerifyNode": {"status": "failed", "attempt": 1, "outputs": {"commands": ["big" * 100]},
                       "error": {"classification": "verification", "message": "tests failed"}},
        "MergeNode": {"status": "succeeded", "outputs": {"mergeCommit": "abc123"}},
    },
    "tasks": {"1.1": {"status": "failed", "attempts": 1, "title": "Add"}},
    "metadata": {"correlationId": "c0ffee"},
}


@pytest.fixture
def retention(env, monkeypatch):
    """30 days, pruned two rows per transaction (so batching is what runs)."""
    use_settings(env, monkeypatch, {"DEVTEAM_RETENTION_DAYS": "30",
                                    "DEVTEAM_RETENTION_BATCH_ROWS": "2"})
    return get_settings()


async def sql(store, statement: str, **params):
    async with store.transaction() as session:
        result = await session.execute(text(statement), params)
        return result.all() if result.returns_rows else []


async def execution_with_history(store, project: str, *, status: str, age: timedelta,
                                 logs: int = 5) -> uuid.UUID:
    """An execution with ``logs`` log frames, an error and a completion frame, three stage
    runs, an error record and a task context, all ``age`` old."""
    execution = await new_execution(store, project)
    await write(store, execution, logs)
    await write(store, execution, 1, kind="error")
    await write(store, execution, 1, kind="completion")
    for attempt in (1, 2, 3):
        await sql(store, "INSERT INTO stage_runs (execution_id, task_id, stage, attempt, status, "
                  "result) VALUES (:e, '1.1', 'VERIFY', :a, 'failed', CAST(:r AS jsonb))",
                  e=execution, a=attempt, r=json.dumps({"commands": ["x" * 1000]}))
    await sql(store, "INSERT INTO errors (id, execution_id, task_id, stage, classification, "
              "message) VALUES (:id, :e, '1.1', 'VERIFY', 'verification', 'tests failed')",
              id=uuid.uuid4(), e=execution)
    when = datetime.now(UTC) - age
    await sql(store, "UPDATE events SET task_context = CAST(:c AS jsonb) WHERE id = "
              "(SELECT event_id FROM executions WHERE id = :e)", c=json.dumps(CONTEXT), e=execution)
    await sql(store, "UPDATE executions SET status = :s, finished_at = :f, updated_at = :w "
              "WHERE id = :e", s=status, f=when if status != "paused" else None, w=when,
              e=execution)
    await sql(store, "UPDATE notifications SET created_at = :w WHERE execution_id = :e",
              w=when, e=execution)
    return execution


async def kinds(store, execution) -> list[str]:
    rows = await sql(store, "SELECT type FROM notifications WHERE execution_id = :e ORDER BY seq",
                     e=execution)
    return [r[0] for r in rows]


async def count(store, table: str, execution) -> int:
    return (await sql(store, f"SELECT count(*) FROM {table} WHERE execution_id = :e",
                      e=execution))[0][0]


async def context_of(store, execution) -> dict:
    return (await sql(store, "SELECT v.task_context FROM events v JOIN executions x ON "
                      "x.event_id = v.id WHERE x.id = :e", e=execution))[0][0]


async def test_old_records_are_pruned_in_batches_and_each_execution_keeps_its_summary_and_errors(
    store, retention
):
    ended = await execution_with_history(store, "acme/old", status="completed", age=OLD)
    paused = await execution_with_history(store, "acme/paused", status="paused", age=OLD)
    recent = await execution_with_history(store, "acme/new", status="completed",
                                          age=timedelta(days=2))
    before = {e: await kinds(store, e) for e in (ended, paused, recent)}
    # the start frame, 5 logs, an error and the end
    assert before[ended] == ["execution-update", *["execution-log"] * 5, "error", "completion"]

    pruned = await asyncio.to_thread(prune_old_records, retention)

    # notifications older than 30 days go, whoever they belong to, except errors and ends
    assert await kinds(store, ended) == ["error", "completion"]
    assert await kinds(store, paused) == ["error", "completion"]
    assert await kinds(store, recent) == before[recent]
    assert pruned.notifications == 2 * 6
    # stage runs go with an execution that ended long ago; a paused one resumes from its
    # own, so they stay whatever their age
    assert await count(store, "stage_runs", ended) == 0
    assert await count(store, "stage_runs", paused) == 3
    assert await count(store, "stage_runs", recent) == 3
    assert pruned.stage_runs == 3
    # the summary and the error records stay: the execution, its tasks, its errors
    assert await count(store, "errors", ended) == 1
    status = await sql(store, "SELECT status FROM executions WHERE id = :e", e=ended)
    assert status[0][0] == "completed"
    context = await context_of(store, ended)
    assert context["tasks"] == CONTEXT["tasks"]
    assert context["metadata"] == CONTEXT["metadata"]
    assert context["nodes"]["VerifyNode"] == {
        "status": "failed", "attempt": 1,
        "error": {"classification": "verification", "message": "tests failed"}}
    assert context["nodes"]["MergeNode"] == {"status": "succeeded"}
    assert context["pruned"]["what"] == "stage outputs (retention)"
    assert await context_of(store, paused) == CONTEXT
    assert await context_of(store, recent) == CONTEXT
    assert pruned.contexts == 1
    # the watermark covers what went, and nothing newer
    watermark = (await sql(store, "SELECT pruned_pos FROM stream_position"))[0][0]
    newest_pruned_or_kept_old = (await sql(
        store, "SELECT max(pos) FROM notifications WHERE execution_id = ANY(:e)",
        e=[ended, paused]))[0][0]
    oldest_recent = (await sql(store, "SELECT min(pos) FROM notifications WHERE execution_id = :e",
                               e=recent))[0][0]
    assert newest_pruned_or_kept_old <= watermark < oldest_recent
    assert pruned.watermark == watermark
    # a second pass finds nothing more to do
    assert (await asyncio.to_thread(prune_old_records, retention)).total == 0


async def test_retention_days_zero_keeps_everything(store, env, monkeypatch):
    use_settings(env, monkeypatch, {"DEVTEAM_RETENTION_DAYS": "0"})
    ended = await execution_with_history(store, "acme/old", status="completed", age=OLD)
    before = await kinds(store, ended)

    assert (await asyncio.to_thread(prune_old_records, get_settings())).total == 0

    assert await kinds(store, ended) == before
    assert await count(store, "stage_runs", ended) == 3


async def test_a_client_resuming_from_before_what_was_kept_is_told_resync_then_gets_the_rest(
    store, procs, token_for, retention
):
    gateway = procs.gateway()
    token = token_for("alice", ["acme/*"])
    ended = await execution_with_history(store, "acme/old", status="completed", age=OLD)
    first_pos = (await sql(store, "SELECT min(pos) FROM notifications"))[0][0]
    pruned = await asyncio.to_thread(prune_old_records, retention)
    recent = await new_execution(store, "acme/new")
    await write(store, recent, 2)
    kept = [r[0] for r in await sql(store, "SELECT pos FROM notifications ORDER BY pos")]

    # a client whose cursor is older than the watermark: resync first, then every frame
    # still kept after its cursor, in order
    expected = [p for p in kept if p > first_pos]
    ws = await connect(ws_url(gateway.url, token, since=str(first_pos)))
    frames = await read_frames(ws, 1 + len(expected))
    await ws.close()
    resync, rest = frames[0], frames[1:]
    assert resync["type"] == "resync"
    assert resync["payload"]["since"] == str(first_pos)
    assert resync["payload"]["prunedUpTo"] == str(pruned.watermark)
    assert "no longer kept (retention)" in resync["payload"]["reason"]
    assert [int(f["id"]) for f in rest] == expected
    assert [f["type"] for f in rest if f["executionId"] == str(ended)] == ["error", "completion"]

    # a client already past the watermark is not bothered: its frames, no resync
    ws = await connect(ws_url(gateway.url, token, since=str(pruned.watermark)))
    frames = await read_frames(ws, 3)
    await ws.close()
    assert [f["type"] for f in frames] == ["execution-update", "execution-log", "execution-log"]
    assert [int(f["id"]) for f in frames] == [p for p in kept if p > pruned.watermark]


async def test_the_server_sent_events_stream_says_resync_the_same_way(
    store, procs, token_for, retention
):
    import httpx

    gateway = procs.gateway()
    token = token_for("alice", ["acme/*"])
    await execution_with_history(store, "acme/old", status="completed", age=OLD, logs=2)
    pruned = await asyncio.to_thread(prune_old_records, retention)

    events = []
    async with httpx.AsyncClient(timeout=10) as client, client.stream(
        "GET", f"{gateway.url}/api/devteam/stream", params={"token": token},
        headers={"Last-Event-ID": "0"},
    ) as answer:
        async for line in answer.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
            if len(events) == 4:  # established, resync, error, completion
                break
    assert [e["type"] for e in events] == ["connection-established", "resync", "error",
                                           "completion"]
    assert events[1]["payload"]["prunedUpTo"] == str(pruned.watermark)
