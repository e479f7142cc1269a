"""The LISTEN connection the relay and the fanout keep (tenacity reconnects), on the real
Postgres: it wakes its owner on connect and on every NOTIFY, comes back after its backend
is terminated, and stops when asked even while it cannot connect at all."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import asyncpg
import pytest

from pipeline.db import asyncpg_dsn
from pipeline.listen import listen_forever

CHANNEL = "devteam_test_listen"
GUARD = 30  # a hang fails the test instead of blocking the run; no timing is asserted


class Owner:
    """Counts what the connection reports; tests wait on the counts, not on time."""

    def __init__(self) -> None:
        self.wakes = 0
        self.ups = 0
        self.downs = 0
        self.changed = asyncio.Event()

    def wake(self) -> None:
        self.wakes += 1
        self.changed.set()

    def connected(self, up: bool) -> None:
        if up:
            self.ups += 1
        else:
            self.downs += 1
        self.changed.set()

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(GUARD):
            while not done():
                self.changed.clear()
                await self.changed.wait()


async def test_it_wakes_on_notify_and_comes_back_after_its_backend_is_terminated(
    db_url: str,
) -> None:
    dsn = asyncpg_dsn(db_url)
    owner, stopping = Owner(), asyncio.Event()
    task = asyncio.create_task(listen_forever(
        dsn, CHANNEL, owner.wake, name="test", stopping=stopping, connected=owner.connected))
    admin = await asyncpg.connect(dsn)
    try:
        # connected: the owner is woken once to catch up
        await owner.until(lambda: owner.ups == 1 and owner.wakes == 1)
        # a NOTIFY wakes it
        await admin.execute(f"NOTIFY {CHANNEL}")
        await owner.until(lambda: owner.wakes == 2)
        # its backend terminated: it connects again and wakes the owner to catch up
        terminated = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN%' AND datname = current_database()")
        assert terminated == 1
        await owner.until(lambda: owner.ups == 2 and owner.wakes == 3)
        await admin.execute(f"NOTIFY {CHANNEL}")
        await owner.until(lambda: owner.wakes == 4)
    finally:
        await admin.close()
        stopping.set()
        await asyncio.wait_for(task, GUARD)


@pytest.mark.sockets
async def test_while_it_cannot_connect_it_keeps_trying_and_stops_when_asked() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    owner, stopping = Owner(), asyncio.Event()
    task = asyncio.create_task(listen_forever(
        f"postgresql://nobody@127.0.0.1:{port}/none", CHANNEL, owner.wake, name="test",
        stopping=stopping, connected=owner.connected, first_backoff=0.01))
    await owner.until(lambda: owner.downs >= 3)  # failed attempts, retried
    stopping.set()
    await asyncio.wait_for(task, GUARD)  # returns (no exception) once stopping is set
    assert owner.ups == 0 and owner.wakes == 0
