"""The store port's contract for a checked start (``executions.start_checked``): the
start of ``POST /events`` and ``initialize`` in one statement, gated on the project."""

from __future__ import annotations

import asyncio

import pytest
from tests.integration.store.test_contract import (
    CUSTOMER,
    PROJECT,
    URL,
    backend,
    new_start,
    port,
    start,
)
from tests.integration.store.test_contract_notifications import Notes, _view, notes

from pipeline.store.executions import StartRaced
from pipeline.store.memory import MemoryStore
from pipeline.store.notifications import notified
from pipeline.store.port import StorePort

__all__ = ["backend", "notes", "port"]  # the contract suites' fixtures


async def test_a_checked_start_of_an_unknown_project_writes_nothing(port: StorePort) -> None:
    new = new_start()
    async with port.statement() as q:
        attempt = await q.executions.start_checked(new)
    assert (attempt.found, attempt.latest_status, attempt.started) == (False, None, None)
    async with port.reads() as q:
        assert await q.executions.get(new.execution.id) is None
        assert await q.executions.event(new.event.id) is None
        assert await q.audit.of_execution(new.execution.id) == []


async def test_a_checked_start_writes_every_part_by_itself(port: StorePort) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        await start(tx, status="completed")
    new = new_start(key="k")
    async with port.statement() as q:
        attempt = await q.executions.start_checked(new)
    assert (attempt.found, attempt.latest_status) == (True, "completed")
    assert attempt.started is not None
    row = attempt.started.execution
    assert (row.id, row.status, row.last_seq) == (new.execution.id, "initializing", 1)
    async with port.reads() as q:
        assert await q.executions.get(row.id) == row
        event = await q.executions.event(new.event.id)
        assert event is not None and event.execution_id == row.id
        prior = await q.executions.prior_start("ann", PROJECT, "k")
        assert prior is not None and prior.command_id == attempt.started.command_id
        assert [a.action for a in await q.audit.of_execution(row.id)] == ["execution.start"]
        assert await q.executions.lock_last_update(row.id) == new.payload
        command = await q.outbox.load(attempt.started.command_id)
        assert command is not None and command.payload == {"stage": "INIT"}


@pytest.mark.parametrize("status", ["initializing", "running", "paused", "stopping"])
async def test_a_checked_start_beside_an_active_execution_writes_nothing(
    port: StorePort, status: str
) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        await start(tx, status="completed")
        _, active = await start(tx, status=status)
    new = new_start()
    async with port.statement() as q:
        attempt = await q.executions.start_checked(new)
    assert (attempt.found, attempt.latest_status, attempt.started) == (True, status, None)
    async with port.reads() as q:
        assert await q.executions.get(new.execution.id) is None
        assert await q.executions.event(new.event.id) is None
        latest = await q.executions.latest_for_project(PROJECT)
        assert latest is not None and latest.id == active


async def test_concurrent_checked_starts_of_one_project_start_it_once(
    port: StorePort,
) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)

    async def attempt() -> bool | None:
        try:
            async with port.statement() as q:
                return (await q.executions.start_checked(new_start())).started is not None
        except StartRaced:
            return None

    # the project's row lock queues them: the first starts it, the others see it active,
    # or, having read before it committed, are refused by the active-project index
    # (StartRaced, nothing written)
    results = await asyncio.gather(*(attempt() for _ in range(4)))
    assert results.count(True) == 1
    async with port.reads() as q:
        rows = await q.executions.list_for(user_id=None, project_ids=[PROJECT],
                                           customer_ids=None, active_only=True, limit=10)
    assert len(rows) == 1


async def test_a_checked_starts_notify_carries_its_first_row_as_the_table_reads_it(
    port: StorePort, notes: Notes
) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        head = await tx.notifications.head()
    new = new_start()
    async with port.statement() as q:
        attempt = await q.executions.start_checked(new)
    assert attempt.started is not None and attempt.started.pos == head + 1
    (payload,) = await notes.all(1)
    last, rows = notified(payload)
    assert last == head + 1 and len(rows) == 1
    async with port.reads() as q:
        table = await q.notifications.after(head, 10)
    assert [_view(r) for r in rows] == [_view(r) for r in table]
    row = table[0]
    assert (row.execution_id, row.seq, row.type, row.status) == (
        str(new.execution.id), 1, "execution-update", "initializing")
    if not isinstance(port, MemoryStore):  # Postgres: the very text the table holds
        assert bytes(rows[0].payload) == bytes(row.payload)
