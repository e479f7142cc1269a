"""The store port's read of the executions that have not ended (the reaper's live set),
against asyncpg and the in-memory store alike; and the reaper's read of it on Postgres."""

from __future__ import annotations

import asyncio

import pytest
from tests.integration.store.test_contract import CUSTOMER, PROJECT, URL, backend, port, start

from pipeline.reaping import live_executions
from pipeline.store.port import StorePort
from runner.settings import get_settings

__all__ = ["backend", "port"]  # the fixtures, shared with the main contract suite


async def test_active_ids_are_the_executions_that_have_not_ended(port: StorePort) -> None:
    async with port.reads() as tx:
        assert await tx.executions.active_ids() == []
    ids = {}
    async with port.tx() as tx:
        for status in ("initializing", "running", "paused", "stopping", "completed", "error",
                       "stopped"):
            project = f"{CUSTOMER}/{status}"
            await tx.projects.upsert(project, CUSTOMER, URL)
            _, ids[status] = await start(tx, project, status=status)
    async with port.reads() as tx:
        active = await tx.executions.active_ids()
    assert sorted(active, key=str) == sorted(
        (ids[s] for s in ("initializing", "running", "paused", "stopping")), key=str)


@pytest.mark.sockets
async def test_the_reaper_spares_the_executions_postgres_holds_live(env) -> None:
    from pipeline.db import Store

    store = Store.from_settings(get_settings(), pool_size=1)
    try:
        async with store.tx() as tx:
            await tx.projects.upsert(PROJECT, CUSTOMER, URL)
            _, running = await start(tx, status="running")
            await start(tx, status="completed")
    finally:
        await store.close()

    live = await asyncio.to_thread(live_executions, get_settings())

    assert live == {str(running)}
