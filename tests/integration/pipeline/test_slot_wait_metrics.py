"""A container that waits for a sandbox slot is counted per customer (Postgres leases)."""

from __future__ import annotations

import asyncio

from pipeline import metrics
from pipeline.slots import PgSlotLimiter
from runner.settings import load_settings


def _count(customer: str) -> float:
    return float(metrics.SLOT_WAITS.labels(customer)._value.get())


async def test_a_wait_for_a_slot_is_counted_for_its_customer_and_a_free_slot_is_not(
    store, env
) -> None:
    settings = load_settings({**env, "DEVTEAM_SANDBOX_MAX_CONTAINERS": "4",
                              "DEVTEAM_SANDBOX_MAX_CONTAINERS_PER_CUSTOMER": "1"})
    limiter = PgSlotLimiter(settings, store, asyncio.get_running_loop())
    before = _count("slotco"), _count("otherco")
    # Given slotco's only slot taken (no wait: not counted)
    await asyncio.to_thread(limiter.acquire, "slotco", "slotco-a", 30)
    assert _count("slotco") == before[0]
    # When a second container of slotco asks, waits, and gets the slot once it is freed
    loop, reported = asyncio.get_running_loop(), asyncio.Event()
    waiter = asyncio.create_task(asyncio.to_thread(
        limiter.acquire, "slotco", "slotco-b", 30,
        on_wait=lambda _wait: loop.call_soon_threadsafe(reported.set)))
    async with asyncio.timeout(20):  # a guard: no timing is asserted
        await reported.wait()
    async with store.reads() as tx:
        wait = await tx.leases.wait("slotco-b")
    assert wait is not None and wait.holder == "slotco-b"
    await asyncio.to_thread(limiter.release, "slotco-a")
    await waiter
    # Then exactly that wait was counted, for slotco only
    assert _count("slotco") == before[0] + 1
    assert _count("otherco") == before[1]
    histogram = {s.labels.get("customer"): s.value
                 for family in metrics.SLOT_WAIT_SECONDS.collect() for s in family.samples
                 if s.name.endswith("_count")}
    assert histogram["slotco"] >= 1
    await asyncio.to_thread(limiter.release, "slotco-b")
