"""The store port's server probe (the health check's), against asyncpg and the in-memory
store alike; and a database that does not answer."""

from __future__ import annotations

import pytest
from tests.integration.store.test_contract import backend, port

from pipeline.store.port import StorePort

__all__ = ["backend", "port"]  # the fixtures, shared with the main contract suite


async def test_a_store_that_answers_pings(port: StorePort) -> None:
    async with port.reads() as tx:
        assert await tx.server.ping() is None
    async with port.tx() as tx:
        assert await tx.server.ping() is None


@pytest.mark.sockets
async def test_a_database_that_does_not_answer_is_unavailable(env) -> None:
    from pipeline.db import Store, StoreUnavailable, asyncpg_dsn, make_engine
    from runner.settings import get_settings

    settings = get_settings()
    gone = asyncpg_dsn(settings.database.url).rsplit("@", 1)[0] + "@127.0.0.1:1/none"
    store = Store(make_engine(settings), dsn=gone)
    try:
        with pytest.raises(StoreUnavailable):
            async with store.reads() as tx:
                await tx.server.ping()
    finally:
        await store.close()
