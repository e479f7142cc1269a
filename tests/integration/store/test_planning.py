"""How the store's connections plan their statements, on a real Postgres: a store made
with ``warm`` prepares a statement as each connection opens, and one made with
``generic_plans`` (the gateway's) plans each statement once per connection.

Postgres' default planned the batched status read afresh at every run on a connection
that served one-key batches (the plan for one key costs less than the generic plan, which
expects ten), and a connection's first status read cost the server a few milliseconds;
under a burst of polls a few new connections doing both at once held up every request
behind them (status p99 over 10 ms at 32 clients in about half the runs of
``bench/api.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pipeline.db import Store
from pipeline.store.executions import STATUS, warm_status_reads
from runner.settings import get_settings

PLANS = ("SELECT generic_plans, custom_plans FROM pg_prepared_statements "
         "WHERE statement = $1")
"""The status read's planning counts on the connection that asks (its own session)."""


@pytest.fixture
async def stores(env) -> AsyncIterator[tuple[Store, Store]]:
    """(one connection made the way the gateway makes its store's, one made by default)."""
    gateway_like = Store.from_settings(get_settings(), pool_size=1, warm=warm_status_reads,
                                       generic_plans=True)
    default = Store.from_settings(get_settings(), pool_size=1)
    try:
        yield gateway_like, default
    finally:
        await gateway_like.close()
        await default.close()


async def plans(store: Store) -> tuple[int, int] | None:
    """(generic plans, custom plans) of the status read on the store's one connection;
    None when it is not prepared there."""
    async with store.reads() as q:
        row = await q.conn.fetchrow(PLANS, STATUS)  # type: ignore[attr-defined]
    return None if row is None else (row["generic_plans"], row["custom_plans"])


async def read_statuses(store: Store, times: int) -> None:
    for _ in range(times):
        async with store.reads() as q:
            assert await q.executions.statuses(["nobody/none"]) == {}


async def test_a_warmed_connection_has_the_status_read_prepared_before_any_read(
    stores: tuple[Store, Store],
) -> None:
    gateway_like, default = stores
    assert await plans(gateway_like) == (1, 0)  # run once when the connection opened
    assert await plans(default) is None


async def test_with_generic_plans_a_one_key_status_read_is_planned_once(
    stores: tuple[Store, Store],
) -> None:
    gateway_like, default = stores
    async with gateway_like.reads() as q:
        mode = await q.conn.fetchval("SHOW plan_cache_mode")  # type: ignore[attr-defined]
    assert mode == "force_generic_plan"
    await read_statuses(gateway_like, 8)
    await read_statuses(default, 8)

    assert await plans(gateway_like) == (9, 0)
    # the default: planned afresh at every one of the eight reads
    assert await plans(default) == (0, 8)
