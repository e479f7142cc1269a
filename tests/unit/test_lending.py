"""``Lending`` over a pool that behaves like asyncpg's where it matters (bounded; a release
finishes even when its caller is cancelled) and counts what it lends: random loans that
succeed, fail, are cancelled while queued or while holding a connection, and meet
connections dropped while kept. Whatever happens, no more than ``size`` loans are out at
once, waiters are served in the order they came, nothing a failed or cancelled loan held
is lent again, and after ``close`` every connection is back in the pool. (The same
lending runs on a real Postgres in ``tests/integration/store/test_lending.py``.)"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.store import lending
from pipeline.store.lending import Closing, Lending


class FakeConn:
    def __init__(self, n: int) -> None:
        self.n = n
        self.closed = False
        self.in_transaction = False
        self.spoiled = False  # a failed or cancelled loan used it: must not be lent again

    def is_closed(self) -> bool:
        return self.closed

    def is_in_transaction(self) -> bool:
        return self.in_transaction


class FakePool:
    """Like asyncpg's pool: at most ``max_size`` connections out (an acquire waits for a
    release), and a release that finishes even when its caller is cancelled."""

    def __init__(self, max_size: int = 100) -> None:
        self.max_size = max_size
        self.returned = asyncio.Condition()
        self.made = 0
        self.lent: set[FakeConn] = set()
        self.free: list[FakeConn] = []
        self.most = 0
        self.releasing: set[asyncio.Future[None]] = set()

    async def acquire(self) -> FakeConn:
        await asyncio.sleep(0)
        async with self.returned:
            await self.returned.wait_for(lambda: len(self.lent) < self.max_size)
        if self.free:
            conn = self.free.pop()
        else:
            self.made += 1
            conn = FakeConn(self.made)
        assert conn not in self.lent
        self.lent.add(conn)
        self.most = max(self.most, len(self.lent))
        return conn

    async def release(self, conn: FakeConn) -> None:
        # asyncpg's release runs shielded: a caller cancelled meanwhile does not stop it
        task = asyncio.ensure_future(self._release(conn))
        self.releasing.add(task)
        task.add_done_callback(self.releasing.discard)
        await asyncio.shield(task)

    async def _release(self, conn: FakeConn) -> None:
        await asyncio.sleep(0)
        self.lent.discard(conn)
        if not conn.closed:
            conn.spoiled = conn.in_transaction = False  # what the pool's release resets
            self.free.append(conn)
        async with self.returned:
            self.returned.notify_all()

    async def close(self) -> None:
        """Like asyncpg's ``Pool.close``: waits for releases under way."""
        while self.releasing:
            await asyncio.gather(*self.releasing)


class Boom(Exception):
    pass


async def scenario(rng: random.Random, size: int, loans: int) -> tuple[FakePool, int]:
    pool = FakePool(size)
    lent = Lending(pool, size)
    on_loan: set[FakeConn] = set()
    most = 0

    async def one(i: int) -> None:
        nonlocal most
        async with lent.connection() as conn:
            assert isinstance(conn, FakeConn)
            assert not (conn.spoiled or conn.closed or conn.in_transaction)
            assert conn not in on_loan  # lent to one task at a time
            on_loan.add(conn)
            most = max(most, len(on_loan))
            try:
                await asyncio.sleep(rng.choice([0, 0, 0.001, 0.003]))
                fate = rng.random()
                if fate < 0.1:
                    conn.spoiled = True
                    raise Boom(i)
                if fate < 0.15:
                    conn.in_transaction = True  # came back inside a transaction
                if fate < 0.2:
                    conn.closed = True  # the server dropped it
            finally:
                on_loan.discard(conn)

    tasks = []
    for i in range(loans):
        tasks.append(asyncio.create_task(one(i)))
        if rng.random() < 0.3:
            await asyncio.sleep(0)
        if rng.random() < 0.1:
            rng.choice(tasks).cancel()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    assert all(r is None or isinstance(r, Boom | asyncio.CancelledError) for r in results)
    assert lent.out <= size
    await lent.close()
    await pool.close()
    assert lent.out == 0
    assert pool.lent == set()  # everything back in the pool
    return pool, most


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 4), loans=st.integers(1, 60))
def test_random_loans_never_exceed_the_size_and_all_come_back(seed: int, size: int,
                                                               loans: int) -> None:
    _, most = asyncio.run(scenario(random.Random(seed), size, loans))
    assert most <= size


def test_waiters_are_served_in_the_order_they_came() -> None:
    async def run() -> list[int]:
        lent = Lending(FakePool(), 1)
        order: list[int] = []

        async def one(i: int) -> None:
            async with lent.connection():
                order.append(i)
                await asyncio.sleep(0.001)

        tasks = [asyncio.create_task(one(i)) for i in range(20)]
        await asyncio.gather(*tasks)
        await lent.close()
        return order

    assert asyncio.run(run()) == list(range(20))


def test_a_connection_is_lent_again_until_its_loans_are_used_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lending, "RENEW_LOANS", 3)

    async def run() -> list[int]:
        pool = FakePool()
        lent = Lending(pool, 2)
        made = []
        for _ in range(7):
            async with lent.connection():
                made.append(pool.made)
        await lent.close()
        return made

    # one connection, back through the pool's release after every third loan (the fake
    # pool hands the same one out again: it is still good)
    assert asyncio.run(run()) == [1] * 7


def test_after_close_no_loan_is_made() -> None:
    async def run() -> Any:
        lent = Lending(FakePool(), 1)
        async with lent.connection():
            pass
        await lent.close()
        with pytest.raises(Closing):
            async with lent.connection():
                pass
        return lent.out

    assert asyncio.run(run()) == 0
