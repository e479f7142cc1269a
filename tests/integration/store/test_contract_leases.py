"""The store port's sandbox slot leases, against asyncpg and the in-memory store alike."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from tests.integration.store.test_contract import CUSTOMER, PROJECT, URL, backend, port, start

from pipeline.store.memory import MemoryStore
from pipeline.store.port import StorePort

__all__ = ["backend", "port"]  # the fixtures, shared with the main contract suite

TTL, ALIVE, CREATE = 3600.0, 30.0, 300.0


def _ticking(port: StorePort) -> None:
    """In memory, time moves on between statements (as it does between transactions in
    Postgres): every read of the clock is a millisecond later."""
    if isinstance(port, MemoryStore):
        ticks = itertools.count()
        start = datetime.now(UTC)
        port.clock = lambda: start + timedelta(milliseconds=next(ticks))


async def _ask(port: StorePort, customer: str, holder: str, *, per_customer: int,
               global_limit: int, alive: float = ALIVE, ttl: float = TTL,
               create: float = CREATE, execution_id: str | None = None) -> bool:
    """What ``pipeline.slots`` does for one ask: request, drop the dead, grant, look."""
    async with port.tx() as tx:
        await tx.leases.serialize()
        await tx.leases.request(customer, holder, execution_id, ttl=ttl, alive=alive,
                                create=create)
        await tx.leases.drop_dead()
        await tx.leases.grant(per_customer=per_customer, global_limit=global_limit,
                              create=create)
        return await tx.leases.granted(holder)


async def _granted(port: StorePort, *holders: str) -> dict[str, bool]:
    async with port.reads() as tx:
        return {h: await tx.leases.granted(h) for h in holders}


async def test_slots_go_to_the_customer_holding_fewest_first_within_both_limits(
    port: StorePort,
) -> None:
    _ticking(port)
    assert await _ask(port, "a", "a1", per_customer=2, global_limit=2) is True
    # a2 asks before b1, but a already holds a slot: b1 goes first
    assert await _ask(port, "a", "a2", per_customer=2, global_limit=1) is False
    assert await _ask(port, "b", "b1", per_customer=2, global_limit=1) is False
    async with port.tx() as tx:
        await tx.leases.serialize()
        assert await tx.leases.grant(per_customer=2, global_limit=2, create=CREATE) == 1
    assert await _granted(port, "a1", "a2", "b1") == {"a1": True, "a2": False, "b1": True}

    # the per-customer limit holds even with free global slots
    assert await _ask(port, "a", "a3", per_customer=1, global_limit=10) is False
    assert await _granted(port, "a2", "a3") == {"a2": False, "a3": False}

    async with port.reads() as tx:
        await tx.leases.release("a1")
        assert await tx.leases.granted("a1") is False
    assert await _ask(port, "a", "a3", per_customer=2, global_limit=2) is False  # a2 first
    assert await _granted(port, "a2", "a3") == {"a2": True, "a3": False}


async def test_a_waiting_holder_sees_its_place_in_line(port: StorePort) -> None:
    _ticking(port)
    assert await _ask(port, "a", "a1", per_customer=1, global_limit=1) is True
    assert await _ask(port, "a", "a2", per_customer=1, global_limit=1) is False
    assert await _ask(port, "b", "b1", per_customer=1, global_limit=1) is False
    assert await _ask(port, "a", "a3", per_customer=1, global_limit=1) is False
    async with port.reads() as tx:
        a3 = await tx.leases.wait("a3")
        b1 = await tx.leases.wait("b1")
        assert await tx.leases.wait("a1") is None  # granted: not waiting
        assert await tx.leases.wait("nobody") is None
    assert a3 is not None and b1 is not None
    assert (a3.holder, a3.customer_id, a3.position, a3.waiting, a3.customer_running,
            a3.running) == ("a3", "a", 2, 3, 1, 1)
    assert (b1.customer_id, b1.position, b1.waiting, b1.customer_running, b1.running) == (
        "b", 1, 3, 0, 1)
    assert a3.seconds >= 0 and a3.requested_at.tzinfo is not None


async def test_asking_again_keeps_the_place_in_line_and_the_slot(port: StorePort) -> None:
    _ticking(port)
    assert await _ask(port, "a", "a1", per_customer=1, global_limit=1) is True
    assert await _ask(port, "a", "a2", per_customer=1, global_limit=1) is False
    assert await _ask(port, "a", "a3", per_customer=1, global_limit=1) is False
    async with port.reads() as tx:
        first = await tx.leases.wait("a2")
    # a2 polls again (its request renewed), a1's holder re-makes its container
    assert await _ask(port, "a", "a2", per_customer=1, global_limit=1) is False
    assert await _ask(port, "a", "a1", per_customer=1, global_limit=1) is True
    async with port.reads() as tx:
        again = await tx.leases.wait("a2")
    assert first is not None and again is not None
    assert (again.position, again.requested_at) == (1, first.requested_at)


async def test_waiters_that_stopped_polling_and_expired_leases_are_dropped(
    port: StorePort,
) -> None:
    _ticking(port)
    assert await _ask(port, "a", "a1", per_customer=1, global_limit=1) is True
    assert await _ask(port, "a", "dead", per_customer=1, global_limit=1) is False
    # its last poll: the waiter's worker dies and the request lapses at once
    assert await _ask(port, "a", "dead", per_customer=1, global_limit=1, alive=-1) is False
    async with port.tx() as tx:  # a container whose TTL passed
        await tx.leases.request("b", "expired", None, ttl=-1, alive=ALIVE, create=CREATE)
    async with port.tx() as tx:
        assert await tx.leases.drop_dead() == 1
        assert await tx.leases.drop_dead() == 0
        assert await tx.leases.wait("dead") is None
    async with port.reads() as tx:
        await tx.leases.release("a1")
    # were "dead" still in line, it would have this customer's only slot
    assert await _ask(port, "a", "next", per_customer=1, global_limit=1) is True
    assert await _granted(port, "dead", "expired", "next") == {
        "dead": False, "expired": False, "next": True}


async def test_vacate_releases_granted_leases_whose_containers_are_gone(
    port: StorePort,
) -> None:
    _ticking(port)
    for holder in ("placed-gone", "placed-there", "being-made"):
        assert await _ask(port, "a", holder, per_customer=5, global_limit=5) is True
    async with port.tx() as tx:  # granted with no time left to make its container
        await tx.leases.request("b", "too-slow", None, ttl=TTL, alive=ALIVE, create=CREATE)
        assert await tx.leases.grant(per_customer=5, global_limit=5, create=-1) == 1
    assert await _ask(port, "b", "waiting", per_customer=0, global_limit=5) is False
    async with port.reads() as tx:
        await tx.leases.placed("placed-gone")
        await tx.leases.placed("placed-there")
    async with port.reads() as tx:
        listed_at = await tx.leases.clock()
    async with port.tx() as tx:
        vacated = await tx.leases.vacate(["placed-there"], listed_at)
    assert sorted((v.holder, v.customer_id) for v in vacated) == [
        ("placed-gone", "a"), ("too-slow", "b")]
    assert await _granted(port, "placed-gone", "placed-there", "being-made", "too-slow") == {
        "placed-gone": False, "placed-there": True, "being-made": True, "too-slow": False}
    async with port.reads() as tx:
        assert await tx.leases.wait("waiting") is not None  # waiters are not vacated
        assert await tx.leases.vacate([], listed_at - timedelta(hours=1)) == []


async def test_a_container_placed_after_the_listing_is_not_taken_for_gone(
    port: StorePort,
) -> None:
    _ticking(port)
    assert await _ask(port, "a", "a1", per_customer=1, global_limit=1) is True
    async with port.reads() as tx:
        listed_at = await tx.leases.clock()
    # made (and placed) after the engine was listed: not in the listing
    async with port.reads() as tx:
        await tx.leases.placed("a1")
        assert await tx.leases.vacate([], listed_at) == []
    assert await _granted(port, "a1") == {"a1": True}


async def test_a_rolled_back_ask_leaves_no_lease(port: StorePort) -> None:
    try:
        async with port.tx() as tx:
            await tx.leases.serialize()
            await tx.leases.request("a", "a1", None, ttl=TTL, alive=ALIVE, create=CREATE)
            raise RuntimeError("the worker died mid-ask")
    except RuntimeError:
        pass
    assert await _granted(port, "a1") == {"a1": False}
    async with port.reads() as tx:
        assert await tx.leases.wait("a1") is None


async def test_the_fleet_counts_running_and_waiting_leases_per_customer(
    port: StorePort,
) -> None:
    _ticking(port)
    assert await _ask(port, "a", "a1", per_customer=1, global_limit=2) is True
    assert await _ask(port, "a", "a2", per_customer=1, global_limit=2) is False
    assert await _ask(port, "b", "b1", per_customer=1, global_limit=2) is True
    assert await _ask(port, "b", "b2", per_customer=1, global_limit=2) is False
    assert await _ask(port, "c", "c1", per_customer=1, global_limit=2) is False
    async with port.reads() as tx:
        fleet = await tx.outbox.fleet()
    assert (fleet.running, fleet.waiting) == ({"a": 1, "b": 1}, {"a": 1, "b": 1, "c": 1})


async def test_the_status_shows_where_the_executions_container_stands_in_line(
    port: StorePort,
) -> None:
    _ticking(port)
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        _, execution = await start(tx, status="running")
    async with port.reads() as tx:
        status = (await tx.executions.statuses([PROJECT])).get(PROJECT)
    assert status is not None and status.wait is None
    assert await _ask(port, CUSTOMER, "other", per_customer=1, global_limit=1) is True
    assert await _ask(port, CUSTOMER, "first", per_customer=1, global_limit=1) is False
    assert await _ask(port, CUSTOMER, "dt-mine", per_customer=1, global_limit=1,
                      execution_id=str(execution)) is False
    async with port.reads() as tx:
        status = (await tx.executions.statuses([PROJECT])).get(PROJECT)
    assert status is not None and status.wait is not None
    wait = status.wait
    assert (wait.holder, wait.position, wait.waiting, wait.customer_running, wait.running) == (
        "dt-mine", 2, 2, 1, 1)
    assert wait.seconds >= 0
