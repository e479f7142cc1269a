"""One LISTEN connection kept alive: reconnect with backoff, wake the owner on every NOTIFY.

The relay (outbox channel) and the gateway's fanout (stream channel) both need the same
thing: a dedicated connection that LISTENs, notices when it is gone (a termination
callback, plus a ``SELECT 1`` every few seconds for half-open connections), and comes back
with exponential backoff. After every (re)connect the owner is woken once, so whatever was
committed while the connection was away is caught up from the table.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import structlog

log = structlog.get_logger("devteam.listen")

PROBE_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 5.0


async def listen_forever(
    dsn: str,
    channel: str,
    wake: Callable[[], None],
    *,
    name: str,
    stopping: asyncio.Event | None = None,
    connected: Callable[[bool], None] | None = None,
    first_backoff: float = 0.1,
) -> None:
    """LISTEN on ``channel`` until cancelled (or ``stopping`` is set); call ``wake`` on
    every notification and after every (re)connect; report ``connected(True/False)``."""
    backoff = first_backoff
    while stopping is None or not stopping.is_set():
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(dsn, timeout=5)
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            await conn.add_listener(channel, lambda *_: wake())
            if connected is not None:
                connected(True)
            wake()  # catch up with whatever was committed while we were away
            backoff = first_backoff
            while not lost.is_set() and (stopping is None or not stopping.is_set()):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), timeout=PROBE_SECONDS)
                if not lost.is_set():
                    await conn.execute("SELECT 1")  # detect half-open connections
        except Exception as exc:  # noqa: BLE001 - reconnect whatever went wrong
            if connected is not None:
                connected(False)
            log.warning("listen.lost", owner=name, channel=channel, error=type(exc).__name__,
                        retry_in=backoff)
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=1)
