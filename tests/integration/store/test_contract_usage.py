"""The store port's usage queries, against asyncpg and the in-memory store alike."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
from tests.integration.store.test_contract import CUSTOMER, PROJECT, URL, backend, port, start

from pipeline.store.memory import MemoryStore
from pipeline.store.port import StorePort, Tx
from pipeline.store.usage import UsageSums

__all__ = ["backend", "port"]  # the fixtures, shared with the main contract suite

DAY1 = datetime(2026, 12, 1, 23, 59, tzinfo=UTC)
DAY2 = datetime(2026, 12, 2, 0, 1, tzinfo=UTC)


async def _run(port: StorePort, tx: Tx, execution_id: uuid.UUID, stage: str, attempt: int,
               usage: dict[str, Any] | None, finished: datetime | None) -> None:
    """A stage run as the engine leaves it (the port has no writer for these columns)."""
    if isinstance(port, MemoryStore):
        port.tables.stage_runs.append({
            "execution_id": execution_id, "task_id": "1.1", "stage": stage, "attempt": attempt,
            "status": "succeeded" if finished else "running", "lease_until": None,
            "finished_at": finished,
            "usage": None if usage is None else msgspec.json.decode(msgspec.json.encode(usage)),
        })
        return
    await tx.conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO stage_runs (execution_id, task_id, stage, attempt, status, finished_at, "
        "usage) VALUES ($1, '1.1', $2, $3, $4, $5, $6::jsonb)",
        execution_id, stage, attempt, "succeeded" if finished else "running", finished,
        None if usage is None else msgspec.json.encode(usage).decode())


async def _owned_by(port: StorePort, tx: Tx, execution_id: uuid.UUID, customer: str) -> None:
    """The execution belongs to ``customer`` (``start`` writes the suite's customer)."""
    if isinstance(port, MemoryStore):
        port.tables.executions[execution_id]["customer_id"] = customer
        return
    await tx.conn.execute("UPDATE executions SET customer_id = $2 WHERE id = $1",  # type: ignore[attr-defined]
                          execution_id, customer)


async def test_usage_is_summed_per_project_and_utc_day_and_per_execution(
    port: StorePort,
) -> None:
    other_project = f"{CUSTOMER}/api"
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        await tx.projects.upsert(other_project, CUSTOMER, URL)
        await tx.projects.upsert("other/web", "other", URL)
        _, web = await start(tx, status="running")
        _, api = await start(tx, other_project, status="running")
        _, foreign = await start(tx, "other/web", status="running")
        await _owned_by(port, tx, foreign, "other")
        model = {"tokensSent": 400, "tokensReceived": 120, "cost": 0.007, "containers": 0}
        await _run(port, tx, web, "IMPLEMENT", 1, model, DAY1)
        await _run(port, tx, web, "IMPLEMENT", 2, {**model, "cost": None}, DAY2)
        await _run(port, tx, web, "VERIFY", 1, {"cpuSeconds": 1.5, "peakMemoryBytes": 900,
                                                "wallSeconds": 3.0, "containers": 1}, DAY2)
        await _run(port, tx, web, "VERIFY", 2, {"cpuSeconds": 0.5, "peakMemoryBytes": 1200,
                                                "wallSeconds": 1.0, "containers": 2}, DAY2)
        await _run(port, tx, web, "SELECT", 1, None, DAY1)  # no usage: not counted
        await _run(port, tx, web, "IMPLEMENT", 3, None, None)  # still running
        await _run(port, tx, api, "IMPLEMENT", 1, model, DAY2)
        await _run(port, tx, foreign, "IMPLEMENT", 1, model, DAY2)
    start_at = datetime(2026, 12, 1, tzinfo=UTC)
    async with port.tx() as tx:
        days = await tx.usage.daily(CUSTOMER, start_at, start_at + timedelta(days=2))
        assert [(d.project_id, d.day) for d in days] == [
            (other_project, date(2026, 12, 2)), (PROJECT, date(2026, 12, 1)),
            (PROJECT, date(2026, 12, 2))]
        assert days[1].sums == UsageSums(tokens_sent=400, tokens_received=120, cost=0.007,
                                         implement_rounds=1)
        assert days[2].sums == UsageSums(tokens_sent=400, tokens_received=120, cost=None,
                                         cpu_seconds=2.0, peak_memory_bytes=1200,
                                         wall_seconds=4.0, implement_rounds=1, containers=3)
        only_web = await tx.usage.daily(CUSTOMER, start_at, start_at + timedelta(days=2),
                                        PROJECT)
        assert {d.project_id for d in only_web} == {PROJECT}
        first_day = await tx.usage.daily(CUSTOMER, start_at, start_at + timedelta(days=1))
        assert [(d.project_id, d.day) for d in first_day] == [(PROJECT, date(2026, 12, 1))]
        assert await tx.usage.daily("nobody", start_at, start_at + timedelta(days=2)) == []
        total = await tx.usage.of_execution(web)
        assert total == UsageSums(tokens_sent=800, tokens_received=240, cost=0.007,
                                  cpu_seconds=2.0, peak_memory_bytes=1200, wall_seconds=4.0,
                                  implement_rounds=2, containers=3)
        assert await tx.usage.of_execution(uuid.uuid4()) == UsageSums()
