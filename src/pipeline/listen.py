"""One LISTEN connection kept alive: reconnect with backoff, wake the owner on every NOTIFY.

The relay (outbox channel) and the gateway's fanout (stream channel) both need the same
thing: a dedicated connection that LISTENs (``store.listen``), notices when it is gone (a
termination callback, plus a probe every few seconds for half-open connections), and
comes back with exponential backoff (tenacity). After every (re)connect the owner is woken once, so
whatever was committed while the connection was away is caught up from the table.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    wait_exponential,
)

from pipeline.store.listen import listen

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
    notified: Callable[[str], None] | None = None,
) -> None:
    """LISTEN on ``channel`` until cancelled (or ``stopping`` is set); call ``wake`` on
    every notification and after every (re)connect; report ``connected(True/False)``.
    With ``notified``, a notification calls it with its payload instead of ``wake``.

    A lost connection is reconnected at once; failed attempts back off (tenacity) from
    ``first_backoff`` doubling to ``MAX_BACKOFF_SECONDS``, afresh after each connection."""

    def stopped(_state: RetryCallState | None = None) -> bool:
        return stopping is not None and stopping.is_set()

    def failed(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if connected is not None:
            connected(False)
        log.warning("listen.lost", owner=name, channel=channel, error=type(exc).__name__,
                    retry_in=state.next_action.sleep if state.next_action else None)

    while not stopped():
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(Exception), stop=stopped, before_sleep=failed,
                wait=wait_exponential(multiplier=first_backoff, max=MAX_BACKOFF_SECONDS),
            ):
                with attempt:
                    await _listen_until_lost(dsn, channel, wake, stopped, connected,
                                             notified)
        except RetryError:
            return  # stopping while the connection kept failing


async def _listen_until_lost(
    dsn: str,
    channel: str,
    wake: Callable[[], None],
    stopped: Callable[[], bool],
    connected: Callable[[bool], None] | None,
    notified: Callable[[str], None] | None = None,
) -> None:
    """One connection: LISTEN, wake the owner, probe it, return when it is lost or on
    ``stopping``; raise when it cannot be made or a probe fails."""
    listening = await listen(dsn, channel,
                             notified if notified is not None else lambda _payload: wake())
    try:
        if connected is not None:
            connected(True)
        wake()  # catch up with whatever was committed while we were away
        while not listening.lost.is_set() and not stopped():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listening.lost.wait(), timeout=PROBE_SECONDS)
            if not listening.lost.is_set():
                await listening.probe()  # detect half-open connections
    finally:
        await listening.close()
