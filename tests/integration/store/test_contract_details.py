"""The store port's execution-detail read, against asyncpg and the in-memory store alike."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from tests.integration.store.test_contract import CUSTOMER, PROJECT, URL, backend, port, start

from pipeline.store.memory import MemoryStore
from pipeline.store.port import StorePort, Tx

__all__ = ["backend", "port"]  # the fixtures, shared with the main contract suite

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _j(value: Any) -> Any:
    return None if value is None else msgspec.json.decode(msgspec.json.encode(value))


async def _run(port: StorePort, tx: Tx, execution_id: uuid.UUID, task: str, stage: str,
               attempt: int, *, ms: int | None, usage: dict[str, Any] | None = None,
               result: dict[str, Any] | None = None) -> None:
    """A stage run as the engine leaves it (the port has no writer for these columns)."""
    if isinstance(port, MemoryStore):
        port.tables.stage_runs.append({
            "execution_id": execution_id, "task_id": task, "stage": stage, "attempt": attempt,
            "status": "succeeded", "lease_until": None, "finished_at": T0, "duration_ms": ms,
            "usage": _j(usage), "result": _j(result)})
        return
    await tx.conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO stage_runs (execution_id, task_id, stage, attempt, status, finished_at, "
        "duration_ms, usage, result) VALUES ($1, $2, $3, $4, 'succeeded', $5, $6, $7::jsonb, "
        "$8::jsonb)",
        execution_id, task, stage, attempt, T0, ms,
        None if usage is None else msgspec.json.encode(usage).decode(),
        None if result is None else msgspec.json.encode(result).decode())


async def _error(port: StorePort, tx: Tx, execution_id: uuid.UUID, error_id: uuid.UUID,
                 at: datetime, message: str) -> None:
    if isinstance(port, MemoryStore):
        port.tables.errors.append({
            "id": error_id, "execution_id": execution_id, "task_id": "1.1", "stage": "VERIFY",
            "classification": "verification", "message": message, "attempts": 2,
            "created_at": at})
        return
    await tx.conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO errors (id, execution_id, task_id, stage, classification, message, "
        "attempts, created_at) VALUES ($1, $2, '1.1', 'VERIFY', 'verification', $3, 2, $4)",
        error_id, execution_id, message, at)


async def _tasks(port: StorePort, tx: Tx, event_id: uuid.UUID, tasks: dict[str, Any]) -> None:
    if isinstance(port, MemoryStore):
        port.tables.events[event_id]["task_context"] = _j({"nodes": {}, "tasks": tasks})
        return
    await tx.conn.execute(  # type: ignore[attr-defined]
        "UPDATE events SET task_context = $2::jsonb WHERE id = $1", event_id,
        msgspec.json.encode({"nodes": {}, "tasks": tasks}).decode())


async def test_an_executions_detail_parts_read_back_in_order(port: StorePort) -> None:
    criteria = {"tests": {"passed": True, "actual": "pass", "required": "pass"}}
    first, second, third = sorted((uuid.uuid4() for _ in range(3)), key=str)
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        event_id, execution = await start(tx, status="completed")
        await tx.projects.upsert(f"{CUSTOMER}/api", CUSTOMER, URL)
        other_event, other = await start(tx, f"{CUSTOMER}/api", status="completed")
        await _tasks(port, tx, event_id, {"1.1": {"title": "Add", "status": "done"}})
        await _run(port, tx, execution, "", "INIT", 1, ms=5)
        await _run(port, tx, execution, "1.1", "IMPLEMENT", 1, ms=300,
                   usage={"tokensSent": 10}, result={"commit": "abc", "results": {"x": 1}})
        await _run(port, tx, execution, "1.1", "VERIFY", 1, ms=None,
                   usage={"cpuSeconds": 1.5}, result={"results": criteria, "commands": []})
        await _run(port, tx, other, "9.9", "VERIFY", 1, ms=1, result={"results": criteria})
        # two errors at the same moment (ordered by id) and an older one
        await _error(port, tx, execution, second, T0, "b")
        await _error(port, tx, execution, first, T0, "a")
        await _error(port, tx, execution, third, T0 - timedelta(minutes=1), "c")
        await _error(port, tx, other, uuid.uuid4(), T0, "not this execution's")
    async with port.tx() as tx:
        parts = await tx.details.of_execution(execution, event_id)
        nothing = await tx.details.of_execution(uuid.uuid4(), uuid.uuid4())
        others = await tx.details.of_execution(other, other_event)
    assert parts.tasks == {"1.1": {"title": "Add", "status": "done"}}
    assert [(r.task_id, r.stage, r.attempt, r.duration_ms) for r in parts.runs] == [
        ("", "INIT", 1, 5), ("1.1", "IMPLEMENT", 1, 300), ("1.1", "VERIFY", 1, None)]
    # only VERIFY's results are criteria; usage reads back as stored, null where none
    assert [r.criteria for r in parts.runs] == [None, None, criteria]
    assert [r.usage for r in parts.runs] == [None, {"tokensSent": 10}, {"cpuSeconds": 1.5}]
    assert [(e.id, e.message) for e in parts.errors] == [(first, "a"), (second, "b"),
                                                         (third, "c")]
    assert parts.error_count == 3 and parts.errors[0].attempts == 2
    assert parts.errors[0].created_at == T0
    assert (nothing.tasks, nothing.runs, nothing.errors, nothing.error_count) == ({}, [], [], 0)
    assert [r.task_id for r in others.runs] == ["9.9"] and others.error_count == 1
    assert others.tasks == {}
