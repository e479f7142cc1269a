"""Turns for transactions (``Store._turn``), on a real Postgres: at most ``writers``
transactions and write statements of a store at once, first come, first served; single
reads never wait for one.

Every transaction that writes a frame holds the stream's one position row lock until its
commit. With 10 at once (the pool's size), starts queued on that lock inside Postgres:
``POST /events`` at 32 clients cost 0.60–0.65 ms of database CPU a start, against 0.48
with 4 at once and 0.41 with 2 (``bench/api.py``, README)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from pipeline.db import Store
from runner.settings import get_settings


@pytest.fixture
async def one_writer(env) -> AsyncIterator[Store]:
    """A store of 3 connections and one turn."""
    store = Store.from_settings(get_settings(), pool_size=3, writers=1)
    try:
        yield store
    finally:
        await store.close()


async def hold_tx(store: Store, opened: asyncio.Event, release: asyncio.Event,
                  order: list[str], name: str) -> None:
    async with store.tx() as tx:
        await tx.server.ping()
        order.append(f"{name} in")
        opened.set()
        await release.wait()
        order.append(f"{name} out")


async def test_no_more_transactions_run_at_once_than_the_store_has_writers(env) -> None:
    store = Store.from_settings(get_settings(), pool_size=5, writers=2)
    inside = most = 0

    async def transaction() -> None:
        nonlocal inside, most
        async with store.tx() as tx:
            inside += 1
            most = max(most, inside)
            # the server's view: this store's backends inside a transaction right now
            open_here = await tx.conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'devteam' AND xact_start IS NOT NULL"
                " AND backend_type = 'client backend'")
            assert open_here <= 2 + 1  # + the one reading below, outside any turn
            await tx.conn.execute("SELECT pg_sleep(0.05)")
            inside -= 1

    async def reader() -> None:
        for _ in range(20):
            async with store.reads() as q:
                await q.server.ping()

    try:
        await asyncio.wait_for(asyncio.gather(*(transaction() for _ in range(8)), reader()),
                               30)
    finally:
        await store.close()
    assert most == 2
    assert store.writers == 2


async def test_a_read_does_not_wait_for_a_turn(one_writer: Store) -> None:
    opened, release, order = asyncio.Event(), asyncio.Event(), []
    holder = asyncio.create_task(hold_tx(one_writer, opened, release, order, "tx"))
    await opened.wait()
    async with one_writer.reads() as q:  # the only turn is taken: a read still runs
        assert await asyncio.wait_for(q.conn.fetchval("SELECT 1"), 5) == 1
    order.append("read")
    release.set()
    await asyncio.wait_for(holder, 5)
    assert order == ["tx in", "read", "tx out"]


async def test_a_write_statement_waits_for_its_turn(one_writer: Store) -> None:
    opened, release, order = asyncio.Event(), asyncio.Event(), []
    holder = asyncio.create_task(hold_tx(one_writer, opened, release, order, "tx"))
    await opened.wait()

    async def statement() -> None:
        async with one_writer.statement() as q:
            await q.server.ping()
            order.append("statement")

    waiting = asyncio.create_task(statement())
    # long enough for the statement to run if it did not wait for the turn
    await asyncio.sleep(0.3)
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, waiting), 5)
    assert order == ["tx in", "tx out", "statement"]


async def test_a_transaction_opened_inside_one_takes_no_second_turn(one_writer: Store) -> None:
    async def nested() -> int:
        async with one_writer.tx() as outer:
            await outer.server.ping()
            async with one_writer.tx() as inner, one_writer.statement() as alone:
                await alone.server.ping()
                return int(await inner.conn.fetchval("SELECT 2"))

    # with a second turn asked for, the only one being its own, it would wait forever
    assert await asyncio.wait_for(nested(), 5) == 2


async def test_turns_go_in_order_and_a_cancelled_waiter_leaves_no_turn_taken(
    one_writer: Store,
) -> None:
    opened, release, order = asyncio.Event(), asyncio.Event(), []
    holder = asyncio.create_task(hold_tx(one_writer, opened, release, order, "first"))
    await opened.wait()
    queued: dict[str, asyncio.Task[None]] = {}
    for name in ("second", "gone", "third", "fourth"):
        queued[name] = asyncio.create_task(
            hold_tx(one_writer, asyncio.Event(), release, order, name))
        await asyncio.sleep(0)  # each queued before the next
    await asyncio.sleep(0.1)
    queued.pop("gone").cancel()
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, *queued.values()), 10)
    assert order == ["first in", "first out", "second in", "second out",
                     "third in", "third out", "fourth in", "fourth out"]
    # the cancelled task's place in the queue was not kept: the turn is free
    async with one_writer.tx() as tx:
        assert await asyncio.wait_for(tx.conn.fetchval("SELECT 3"), 5) == 3


def test_a_store_has_no_more_writers_than_connections() -> None:
    settings = get_settings()
    assert Store.from_settings(settings, pool_size=2, writers=8).writers == 2
    assert Store.from_settings(settings, pool_size=10).writers == settings.database.writers


async def test_a_snapshot_takes_no_turn_sees_one_snapshot_and_cannot_write(
    one_writer: Store,
) -> None:
    async with one_writer.tx() as tx:
        await tx.conn.execute("CREATE TABLE IF NOT EXISTS turn_probe (n int)")
    opened, release, order = asyncio.Event(), asyncio.Event(), []
    try:
        async with one_writer.snapshot() as snap:
            before = await snap.conn.fetchval("SELECT count(*) FROM turn_probe")
            # the only turn is taken by a writer that commits a row meanwhile: the
            # snapshot neither waits for it nor sees its row
            holder = asyncio.create_task(hold_tx(one_writer, opened, release, order, "tx"))
            await opened.wait()
            async with one_writer.reads() as q:
                await q.conn.execute("INSERT INTO turn_probe VALUES (1)")
            assert await snap.conn.fetchval("SELECT count(*) FROM turn_probe") == before
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await snap.conn.execute("INSERT INTO turn_probe VALUES (2)")
        release.set()
        await asyncio.wait_for(holder, 5)
        async with one_writer.reads() as q:
            assert await q.conn.fetchval("SELECT count(*) FROM turn_probe") == before + 1
    finally:
        async with one_writer.reads() as q:
            await q.conn.execute("DROP TABLE IF EXISTS turn_probe")
