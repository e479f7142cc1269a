"""Container slots shared by every worker process, fair between customers (Postgres).

The runner's ``SlotLimiter`` port, on the ``sandbox_leases`` table through the store port
(``store.leases``; the in-memory store runs the same decisions in the unit tier): a waiter
inserts a row; under one advisory lock, waiting rows are granted in turn — the customer holding the
fewest slots first, then the oldest request — while the global and per-customer limits
allow. A slot is keyed by the container's name, so the worker that removes a container
releases its slot even if another worker created it.

A lease goes with its container, whoever or whatever removed it:

- a **waiting** lease lives while its waiter polls (``alive_until`` is renewed with every
  poll): a waiter whose worker died is dropped by the next grant;
- a **granted** lease gives its holder ``CREATE_SECONDS`` to make the container; once it is
  **placed** (the container exists), the lease lives exactly as long as the container:
  ``vacate`` lists the engine's containers and drops every placed lease whose container is
  gone, and every lease whose creator's allowance passed without a container. A blocked
  waiter runs it at once and every ``VACATE_SECONDS`` while it waits, and the reaper after
  each pass, so a container removed behind the service's back (``docker rm -f``, an engine
  restart) frees its slot within seconds, not at the container's TTL;
- the container's TTL (``expires_at``) stays as the last resort, for an engine that can
  never be asked.

A wait is visible: the waiter's ``on_wait`` hears of it at once and every
``WAIT_REPORT_SECONDS`` (the stages write it into the execution's log), and the status
API shows where an execution's container stands in line (``pipeline.store``).

The sandbox calls ``acquire``/``placed``/``release`` from worker threads; the queries run
on the event loop that owns the database pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Coroutine
from typing import Any, TypeVar

import msgspec
import structlog
from tenacity import Retrying, retry_if_result, wait_exponential

from pipeline import metrics
from pipeline.store.port import StorePort
from runner.errors import TransientError
from runner.ports import SlotWait
from runner.sandbox.limiter import WAIT_REPORT_SECONDS
from runner.settings import Settings

log = structlog.get_logger("devteam.slots")

T = TypeVar("T")
POLL_ALIVE_SECONDS = 30.0
"""A waiting lease not polled for this long belongs to a waiter that is gone."""
CREATE_SECONDS = 300.0
"""How long a granted holder may take to make its container before a missing container
means the slot is free (three creation attempts with their health checks fit well)."""
VACATE_SECONDS = 15.0
"""How often a blocked waiter looks for leases whose containers are gone."""
POLL_BACKOFF = wait_exponential(multiplier=0.05, max=1.0)
"""Between a blocked waiter's asks for its slot (tenacity): 0.05 s, doubling, at most 1 s."""

ContainerNames = Callable[[], Collection[str]]
"""Names of the containers that exist on the engine now (blocking: docker)."""


class PgSlotLimiter:
    """The limiter on a store port (``pipeline.db.Store`` in service: Postgres, shared by
    every worker; or the in-memory store). ``containers`` lists the engine's containers
    (``runner.sandbox.container_names``); without it only the TTL and the waiters' polls
    release leases."""

    def __init__(
        self,
        settings: Settings,
        store: StorePort,
        loop: asyncio.AbstractEventLoop,
        *,
        containers: ContainerNames | None = None,
    ) -> None:
        self.global_limit = settings.sandbox.max_containers
        self.per_customer = settings.sandbox.max_containers_per_customer
        self.ttl = settings.sandbox.container_ttl_seconds
        self.store = store
        self.loop = loop
        self.containers = containers

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def acquire(
        self,
        customer_id: str,
        holder: str,
        timeout: float | None = None,
        *,
        execution_id: str | None = None,
        on_wait: Callable[[SlotWait], None] | None = None,
    ) -> None:
        """Wait for a slot (TransientError after ``timeout`` seconds); idempotent per holder.

        While blocked: ``on_wait`` hears of the wait at once and every
        ``WAIT_REPORT_SECONDS``, and leases whose containers are gone are released at once
        and every ``VACATE_SECONDS``."""
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        report_at = vacate_at = started
        last: SlotWait | None = None

        def take() -> bool:
            """Ask once; between asks report the wait and release vacated leases."""
            nonlocal report_at, vacate_at, last
            if self._run(self._take(customer_id, holder, execution_id)):
                return True
            now = time.monotonic()
            if now >= vacate_at and self.containers is not None:
                vacate_at = now + VACATE_SECONDS
                if self._vacate_quietly():  # a slot may be free now: ask again at once
                    granted: bool = self._run(self._take(customer_id, holder, execution_id))
                    if granted:
                        return True
            if deadline is not None and now >= deadline:
                wait = self._run(self._wait(holder))
                self.release(holder)
                raise TransientError(
                    f"no sandbox slot for customer {customer_id} within {timeout:.0f}s"
                    + (f" ({wait.standing()})" if wait else ""),
                    details={"customer": customer_id},
                )
            if now >= report_at:
                report_at = now + WAIT_REPORT_SECONDS
                last = self._run(self._wait(holder))
                if last is not None:
                    log.info("sandbox.slot_wait", customer_id=customer_id, holder=holder,
                             execution_id=execution_id, seconds=round(last.seconds),
                             position=last.position, waiting=last.waiting,
                             customer_running=last.customer_running, running=last.running)
                    if on_wait is not None:
                        on_wait(last)
            return False

        # Ask until granted; past the deadline ``take`` raises.
        Retrying(retry=retry_if_result(lambda granted: not granted), wait=POLL_BACKOFF)(take)
        if last is not None:
            seconds = time.monotonic() - started
            metrics.slot_waited(customer_id, seconds)
            log.info("sandbox.slot_granted", customer_id=customer_id, holder=holder,
                     execution_id=execution_id, seconds=round(seconds))
            if on_wait is not None:
                on_wait(msgspec.structs.replace(last, granted=True, seconds=seconds))

    def placed(self, holder: str) -> None:
        """``holder``'s container exists: from now on the lease goes when it goes."""
        self._run(self._placed(holder))

    def release(self, holder: str) -> None:
        self._run(self._release(holder))

    def vacate(self) -> list[str]:
        """Release the leases whose containers are gone; the holders released."""
        if self.containers is None:
            return []
        return self._run(vacate(self.store, self.containers))

    def _vacate_quietly(self) -> list[str]:
        try:
            return self.vacate()
        except Exception as exc:  # noqa: BLE001 - the engine may be down; the wait goes on
            log.warning("sandbox.vacate_failed", error=type(exc).__name__)
            return []

    async def _take(self, customer_id: str, holder: str, execution_id: str | None) -> bool:
        """Request (or renew the request of) ``holder``, grant what the limits allow, and
        say whether ``holder`` has its slot."""
        async with self.store.tx() as tx:
            await tx.leases.serialize()
            await tx.leases.request(customer_id, holder, execution_id, ttl=self.ttl,
                                    alive=POLL_ALIVE_SECONDS, create=CREATE_SECONDS)
            await tx.leases.drop_dead()
            await tx.leases.grant(per_customer=self.per_customer,
                                  global_limit=self.global_limit, create=CREATE_SECONDS)
            return await tx.leases.granted(holder)

    async def _wait(self, holder: str) -> SlotWait | None:
        async with self.store.reads() as tx:
            row = await tx.leases.wait(holder)
        if row is None:
            return None
        return SlotWait(
            customer_id=row.customer_id, holder=row.holder, seconds=row.seconds,
            position=row.position, waiting=row.waiting,
            customer_running=row.customer_running, customer_limit=self.per_customer,
            running=row.running, limit=self.global_limit,
        )

    async def _placed(self, holder: str) -> None:
        async with self.store.reads() as tx:
            await tx.leases.placed(holder)

    async def _release(self, holder: str) -> None:
        async with self.store.reads() as tx:
            await tx.leases.release(holder)


async def vacate(store: StorePort, containers: ContainerNames) -> list[str]:
    """Release every granted lease whose container is gone from the engine (listed by
    ``containers``, in a thread); the holders released. The store's clock is read
    before the engine is listed, so a container made meanwhile is never taken for gone."""
    async with store.reads() as tx:
        listed_at = await tx.leases.clock()
    existing = sorted(await asyncio.to_thread(containers))
    async with store.reads() as tx:
        rows = await tx.leases.vacate(existing, listed_at)
    for row in rows:
        log.info("sandbox.slot_vacated", holder=row.holder, customer_id=row.customer_id)
    return [row.holder for row in rows]
