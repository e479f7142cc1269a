"""The outbox relay: committed commands → Dramatiq messages.

Woken by NOTIFY on ``devteam_outbox``, backed by polling. Each round claims undispatched
commands with ``FOR UPDATE SKIP LOCKED`` (fairly between customers), sends them with the
command id as message id, and marks them dispatched in the same transaction. A crash
between send and commit re-sends: duplicates are harmless, losses impossible. Every few
seconds it also re-queues commands whose worker died (expired lease) or whose message
vanished (never claimed), which is what makes a SIGKILLed worker or a Redis restart safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    wait_exponential,
)

from pipeline import metrics, outbox
from pipeline.broker import get_broker, send
from pipeline.db import Store, StoreUnavailable, asyncpg_dsn
from pipeline.listen import listen_forever
from runner.errors import TransientError
from runner.settings import Settings

log = structlog.get_logger("devteam.relay")

SWEEP_EVERY_SECONDS = 2.0
ROUND_BACKOFF = wait_exponential(multiplier=0.1, max=5.0)
"""Between attempts of a failed round: 0.1 s, doubling, at most 5 s."""


def _round_failed(state: RetryCallState) -> None:
    """Log a failed round: an outage (Postgres, Redis) as a warning, anything else with
    its traceback."""
    exc = state.outcome.exception() if state.outcome is not None else None
    retry_in = state.next_action.sleep if state.next_action is not None else None
    if isinstance(exc, StoreUnavailable | TransientError):
        log.warning("relay.unavailable", error=str(exc), retry_in=retry_in)
    else:
        log.error("relay.error", error=type(exc).__name__, retry_in=retry_in, exc_info=exc)


class Relay:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.broker = get_broker(settings)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._last_sweep = 0.0

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def dispatch_once(self) -> int:
        """Claim and send one batch; returns how many commands were sent."""
        async with self.store.tx() as tx:
            batch = await outbox.claim_batch(
                tx, per_customer=self.settings.pipeline.max_inflight_per_customer
            )
            if not batch:
                return 0
            for command_id, actor in batch:
                try:
                    await asyncio.to_thread(send, self.broker, command_id=command_id, actor=actor)
                except Exception as exc:
                    raise TransientError(f"broker unavailable: {type(exc).__name__}") from exc
            await outbox.mark_dispatched(tx, [c for c, _ in batch])
        metrics.RELAY_DISPATCHES.inc(len(batch))
        return len(batch)

    async def sweep_once(self) -> int:
        async with self.store.tx() as tx:
            ids = await outbox.requeue_stale(
                tx, grace_seconds=self.settings.pipeline.dispatch_grace_seconds
            )
        if ids:
            metrics.RELAY_REQUEUES.inc(len(ids))
            log.warning("relay.requeued", commands=ids)
            self._wake.set()
        return len(ids)

    async def refresh_fleet(self) -> outbox.Fleet:
        """Read the fleet gauges from Postgres (``pipeline.metrics.set_fleet``)."""
        async with self.store.tx() as tx:
            figures = await outbox.fleet(tx)
        metrics.set_fleet(backlog=figures.backlog, oldest_age=figures.oldest_age,
                          executions=figures.executions, running=figures.running,
                          waiting=figures.waiting)
        return figures

    async def run(self) -> None:
        """Run until ``stop()``; survives Postgres and Redis outages by backing off."""
        listener = asyncio.create_task(self._listen())
        gauges = (asyncio.create_task(self._gauges()) if self.settings.metrics.enabled
                  else None)
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                # A round is retried until it succeeds (the relay must outlive any fault),
                # backing off from 0.1 s to 5 s; the next round starts from 0.1 s again.
                try:
                    async for attempt in AsyncRetrying(
                        retry=retry_if_exception_type(Exception), wait=ROUND_BACKOFF,
                        stop=lambda _state: self._stopping.is_set(), before_sleep=_round_failed,
                    ):
                        with attempt:
                            await self._round()
                except RetryError:
                    break  # stopped while a round kept failing
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(), timeout=self.settings.pipeline.relay_poll_seconds
                    )
        finally:
            for task in (listener, gauges):
                if task is None:
                    continue
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _round(self) -> None:
        """Send everything claimable; every ``SWEEP_EVERY_SECONDS`` re-queue the stale."""
        while await self.dispatch_once():
            pass
        if time.monotonic() - self._last_sweep > SWEEP_EVERY_SECONDS:
            self._last_sweep = time.monotonic()
            await self.sweep_once()

    async def _gauges(self) -> None:
        """Refresh the fleet gauges every ``DEVTEAM_METRICS_REFRESH_SECONDS``."""
        while not self._stopping.is_set():
            try:
                await self.refresh_fleet()
            except Exception as exc:  # noqa: BLE001 - gauges wait for the next round
                log.warning("relay.gauges_failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(),
                                       timeout=self.settings.metrics.refresh_seconds)

    async def _listen(self) -> None:
        """Keep a LISTEN connection; every NOTIFY (and every reconnect) wakes the loop."""
        await listen_forever(asyncpg_dsn(self.settings.database.url), outbox.OUTBOX_CHANNEL,
                             self._wake.set, name="relay", stopping=self._stopping,
                             first_backoff=0.2)
