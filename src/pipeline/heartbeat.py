"""The heartbeat of a running stage: renew its lease, watch for stop, cancel when told.

Every ``interval`` seconds ``renew`` extends the run's lease and answers the execution's
status (None when the lease is lost: another worker took the run over). A stop, an ended
execution or a lost lease asks the step to stop (``Cancellation``; FINALIZE only on a lost
lease); a step still running a grace later has its task cancelled. A renewal that fails
(the database blinked) is logged and tried again on the next beat: the lease has slack.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from pipeline.cancellation import Cancellation, should_cancel

log = structlog.get_logger("devteam.engine")

Renew = Callable[[], Awaitable[str | None]]
"""Extend the lease; the execution's status, or None when the lease is lost."""


class Heartbeat:
    def __init__(
        self,
        renew: Renew,
        cancellation: Cancellation,
        *,
        stage: str = "",
        on_cancel: Callable[[], None] = lambda: None,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.renew = renew
        self.cancellation = cancellation
        self.stage = stage
        self.on_cancel = on_cancel
        self.interval = interval
        self.clock = clock
        self.sleep = sleep

    async def beat(self, work: asyncio.Future[Any]) -> None:
        """One renewal, and what it implies for ``work``."""
        try:
            status = await self.renew()
        except Exception as exc:  # noqa: BLE001 - the heartbeat must outlive a blip
            log.warning("stage.heartbeat_failed", error=type(exc).__name__)
            return
        stop = should_cancel(status, lost=status is None, stage=self.stage)
        if stop and self.cancellation.request(self.clock()):
            self.on_cancel()
        if self.cancellation.overdue(self.clock()) and not work.done():
            work.cancel()

    async def run(self, work: asyncio.Future[Any]) -> None:
        """Beat until cancelled (the engine cancels the heartbeat when the work ends)."""
        while True:
            await self.sleep(self.interval)
            await self.beat(work)


__all__ = ["Heartbeat", "Renew"]
