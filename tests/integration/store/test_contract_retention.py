"""The store port's retention batches, against asyncpg and the in-memory store alike; and
one retention pass (``pipeline.retention.prune``) over each."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from tests.integration.store.test_contract import CUSTOMER, PROJECT, URL, backend, port, start

from pipeline.retention import KEPT_FRAMES, prune
from pipeline.store.memory import MemoryStore
from pipeline.store.port import StorePort, Tx

__all__ = ["backend", "port"]  # the fixtures, shared with the main contract suite

NOW = datetime.now(UTC)
CUTOFF = NOW - timedelta(days=30)
OLD = NOW - timedelta(days=40)
ENDED = ["completed", "error", "stopped"]
CONTEXT = {
    "nodes": {"VerifyNode": {"status": "failed", "outputs": {"commands": ["big"]}},
              "MergeNode": {"status": "succeeded", "outputs": {"mergeCommit": "abc"}}},
    "tasks": {"1.1": {"status": "failed", "title": "Add"}},
}


def _j(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


async def _run(port: StorePort, tx: Tx, execution_id: uuid.UUID, attempt: int) -> None:
    """A stage run as the engine leaves it (the port has no writer for it here)."""
    if isinstance(port, MemoryStore):
        port.tables.stage_runs.append({
            "execution_id": execution_id, "task_id": "1.1", "stage": "VERIFY",
            "attempt": attempt, "status": "failed", "lease_until": None, "finished_at": OLD})
        return
    await tx.conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO stage_runs (execution_id, task_id, stage, attempt, status) "
        "VALUES ($1, '1.1', 'VERIFY', $2, 'failed')", execution_id, attempt)


async def _context(port: StorePort, tx: Tx, event_id: uuid.UUID, context: Any) -> None:
    if isinstance(port, MemoryStore):
        port.tables.events[event_id]["task_context"] = _j(context)
        return
    await tx.conn.execute(  # type: ignore[attr-defined]
        "UPDATE events SET task_context = $2::jsonb WHERE id = $1", event_id,
        msgspec.json.encode(context).decode())


async def _left(port: StorePort, tx: Tx) -> tuple[list[tuple[int, str]], dict[str, int]]:
    """The notifications left (position, type) and the stage runs per execution."""
    if isinstance(port, MemoryStore):
        frames = [(n["pos"], n["type"]) for n in port.tables.notifications]
        runs = [str(r["execution_id"]) for r in port.tables.stage_runs]
    else:
        conn = tx.conn  # type: ignore[attr-defined]
        frames = [(r[0], r[1]) for r in await conn.fetch(
            "SELECT pos, type FROM notifications ORDER BY pos")]
        runs = [str(r[0]) for r in await conn.fetch("SELECT execution_id FROM stage_runs")]
    return sorted(frames), {e: runs.count(e) for e in set(runs)}


async def _history(port: StorePort) -> dict[str, Any]:
    """``old``: ended 40 days ago, with 5 frames (3 logs, an error, a completion), 3 stage
    runs and a context with stage outputs; ``recent``: ended 5 days ago (1 run, the same
    context); ``live``: running (2 recent frames, 1 run); ``bare``: ended long ago, its
    context without nodes."""
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        old_event, old = await start(tx, status="completed")
        recent_event, recent = await start(tx, status="error")
        bare_event, bare = await start(tx, status="stopped")
        await tx.projects.upsert(f"{CUSTOMER}/api", CUSTOMER, URL)
        _, live = await start(tx, f"{CUSTOMER}/api", status="running")
        await tx.executions.set_fields(old, {"finished_at": OLD})
        await tx.executions.set_fields(recent, {"finished_at": NOW - timedelta(days=5)})
        await tx.executions.set_fields(bare, {"finished_at": OLD})
        await tx.notifications.append(old, [("log", {"n": i}) for i in range(3)],
                                      created_at=OLD)
        await tx.notifications.append(old, [("error", {}), ("completion", {})],
                                      created_at=OLD)
        await tx.notifications.append(live, [("log", {}), ("log", {})], created_at=NOW)
        for attempt in (1, 2, 3):
            await _run(port, tx, old, attempt)
        await _run(port, tx, recent, 1)
        await _run(port, tx, live, 1)
        await _context(port, tx, old_event, CONTEXT)
        await _context(port, tx, recent_event, CONTEXT)
        await _context(port, tx, bare_event, {"tasks": {}})
    return {"old": old, "old_event": old_event, "recent": recent, "live": live}


async def test_old_notifications_go_in_batches_under_a_watermark(port: StorePort) -> None:
    await _history(port)
    async with port.tx() as tx:
        assert await tx.retention.watermark() == 0
        assert await tx.retention.old_upto(0, 2, CUTOFF) == 2
        assert await tx.retention.old_upto(0, 100, CUTOFF) == 5
        assert await tx.retention.old_upto(5, 100, CUTOFF) is None
        assert await tx.retention.old_upto(4, 2, CUTOFF) == 5  # 6 is recent
        await tx.retention.raise_watermark(5)
        await tx.retention.raise_watermark(3)  # never lowered
        assert await tx.retention.watermark() == 5
        assert await tx.retention.prune_notifications(0, 2, CUTOFF, list(KEPT_FRAMES)) == 2
        assert await tx.retention.prune_notifications(0, 7, CUTOFF, list(KEPT_FRAMES)) == 1
        frames, _ = await _left(port, tx)
    assert frames == [(4, "error"), (5, "completion"), (6, "log"), (7, "log")]


async def test_stage_runs_of_executions_ended_before_the_cutoff_go_in_batches(
    port: StorePort,
) -> None:
    h = await _history(port)
    async with port.tx() as tx:
        assert await tx.retention.prune_stage_runs(ENDED, CUTOFF, 2) == 2
        assert await tx.retention.prune_stage_runs(ENDED, CUTOFF, 2) == 1
        assert await tx.retention.prune_stage_runs(ENDED, CUTOFF, 2) == 0
        _, runs = await _left(port, tx)
    assert runs == {str(h["recent"]): 1, str(h["live"]): 1}


async def test_old_contexts_with_stage_outputs_are_found_once(port: StorePort) -> None:
    h = await _history(port)
    async with port.tx() as tx:
        found = await tx.retention.old_contexts(ENDED, CUTOFF, 10)
        assert [(c.event_id, c.context) for c in found] == [(h["old_event"], CONTEXT)]
        assert await tx.retention.old_contexts(ENDED, CUTOFF, 0) == []
        await tx.retention.set_context(h["old_event"], {**CONTEXT, "pruned": {"at": "x"}})
    async with port.tx() as tx:
        assert await tx.retention.old_contexts(ENDED, CUTOFF, 10) == []
        event = await tx.executions.event(h["old_event"])
    assert event is not None and event.task_context["pruned"] == {"at": "x"}


async def test_a_retention_pass_prunes_what_is_old_and_keeps_the_rest(port: StorePort) -> None:
    h = await _history(port)

    done = await prune(port, CUTOFF, batch=2)

    assert (done.notifications, done.stage_runs, done.contexts, done.watermark) == (3, 3, 1, 5)
    async with port.tx() as tx:
        frames, runs = await _left(port, tx)
        assert await tx.retention.watermark() == 5
        event = await tx.executions.event(h["old_event"])
        execution = await tx.executions.get(h["old"])
    assert frames == [(4, "error"), (5, "completion"), (6, "log"), (7, "log")]
    assert runs == {str(h["recent"]): 1, str(h["live"]): 1}
    assert event is not None and execution is not None
    assert event.task_context["tasks"] == CONTEXT["tasks"]
    assert event.task_context["nodes"] == {"VerifyNode": {"status": "failed"},
                                           "MergeNode": {"status": "succeeded"}}
    assert event.task_context["pruned"]["what"] == "stage outputs (retention)"
    assert execution.status == "completed"  # the execution's row stays
    again = await prune(port, CUTOFF, batch=2)
    assert again.total == 0
