"""The shared slot limiter (pipeline/slots.py) on the in-memory store: its waiting,
fairness, timeouts and vacating are the limiter's own decisions over the store port, so
they run here without Postgres or Docker (the Postgres leases: tests/integration/sandbox)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection

import pytest

from pipeline.slots import PgSlotLimiter
from pipeline.store.memory import MemoryStore
from runner.errors import TransientError
from runner.ports import SlotWait
from runner.settings import load_settings

GUARD = 30  # a hang fails the test instead of blocking the run; no timing is asserted


def _limiter(store: MemoryStore, *, limit: int, per_customer: int,
             containers: Callable[[], Collection[str]] | None = None) -> PgSlotLimiter:
    settings = load_settings({"DEVTEAM_SANDBOX_MAX_CONTAINERS": str(limit),
                              "DEVTEAM_SANDBOX_MAX_CONTAINERS_PER_CUSTOMER": str(per_customer)})
    return PgSlotLimiter(settings, store, asyncio.get_running_loop(), containers=containers)


def _granted(store: MemoryStore) -> dict[str, bool]:
    return {x["holder"]: x["granted_at"] is not None for x in store.tables.sandbox_leases}


class Waiter:
    """``acquire`` in a thread; ``reported`` is set at its first wait report."""

    def __init__(self, limiter: PgSlotLimiter, customer: str, holder: str) -> None:
        loop = asyncio.get_running_loop()
        self.reported = asyncio.Event()
        self.heard: list[SlotWait] = []

        def on_wait(wait: SlotWait) -> None:
            self.heard.append(wait)
            loop.call_soon_threadsafe(self.reported.set)

        self.task = asyncio.create_task(asyncio.to_thread(
            limiter.acquire, customer, holder, GUARD, on_wait=on_wait))

    async def waiting(self) -> SlotWait:
        async with asyncio.timeout(GUARD):
            await self.reported.wait()
        return self.heard[0]

    async def granted(self) -> SlotWait:
        async with asyncio.timeout(GUARD):
            await self.task
        return self.heard[-1]


async def test_a_freed_slot_goes_to_the_customer_holding_fewest() -> None:
    store = MemoryStore()
    limiter = _limiter(store, limit=2, per_customer=2)
    await asyncio.to_thread(limiter.acquire, "a", "a1", 5)
    await asyncio.to_thread(limiter.acquire, "a", "a2", 5)
    a3 = Waiter(limiter, "a", "a3")
    first = await a3.waiting()
    b1 = Waiter(limiter, "b", "b1")
    await b1.waiting()

    await asyncio.to_thread(limiter.release, "a1")

    # b1 asked after a3, but a still holds a slot and b none
    last = await b1.granted()
    assert last.granted is True and last.holder == "b1"
    assert _granted(store) == {"a2": True, "a3": False, "b1": True}
    assert (first.position, first.waiting, first.customer_running, first.running) == (
        1, 1, 2, 2)
    await asyncio.to_thread(limiter.release, "a2")
    assert (await a3.granted()).granted is True
    assert _granted(store) == {"a3": True, "b1": True}


async def test_no_slot_within_the_timeout_is_a_transient_error_and_leaves_no_lease() -> None:
    store = MemoryStore()
    limiter = _limiter(store, limit=4, per_customer=1)
    await asyncio.to_thread(limiter.acquire, "a", "a1", 5)

    with pytest.raises(TransientError, match="customer a holds 1 of its 1"):
        await asyncio.to_thread(limiter.acquire, "a", "a2", 0)

    assert _granted(store) == {"a1": True}


async def test_a_waiter_frees_the_slot_of_a_container_that_is_gone() -> None:
    store = MemoryStore()
    existing: set[str] = set()
    limiter = _limiter(store, limit=1, per_customer=1, containers=lambda: set(existing))
    await asyncio.to_thread(limiter.acquire, "a", "a1", 5)
    await asyncio.to_thread(limiter.placed, "a1")
    # a1's container was made and then removed behind the service's back

    await asyncio.to_thread(limiter.acquire, "a", "a2", GUARD)

    assert _granted(store) == {"a2": True}
