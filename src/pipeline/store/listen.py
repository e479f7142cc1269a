"""LISTEN on a connection of its own (Postgres only; the in-memory store delivers its
NOTIFYs at commit through ``MemoryStore.listen``, with the same ``Listening`` face).

A LISTEN cannot share a pooled connection (the pool resets a connection when it goes
back, and a pooled connection runs others' transactions), so a listener owns one. Its
owner (``pipeline.listen``) reconnects it when ``lost`` is set or a ``probe`` fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg

from pipeline.store.common import Conn

PROBE = "SELECT 1"
"""A round trip on the listening connection: a half-open connection fails it."""


class PgListening:
    """A connection LISTENing on one channel."""

    def __init__(self, conn: Conn, lost: asyncio.Event) -> None:
        self.conn = conn
        self.lost = lost
        """Set when the connection is gone (its backend terminated, the socket closed)."""

    async def probe(self) -> None:
        """Raise unless the server answers on this connection."""
        await self.conn.execute(PROBE)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.conn.close(timeout=1)


async def listen(dsn: str, channel: str, on_notify: Callable[[str], None], *,
                 connect_timeout: float = 5) -> PgListening:
    """A new connection LISTENing on ``channel``: ``on_notify(payload)`` for every
    notification committed from now on."""
    conn = await asyncpg.connect(dsn, timeout=connect_timeout)
    try:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        await conn.add_listener(channel, lambda _c, _pid, _ch, payload: on_notify(payload))
    except BaseException:
        with contextlib.suppress(Exception):
            await conn.close(timeout=1)
        raise
    return PgListening(conn, lost)
