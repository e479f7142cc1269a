"""Slot leases in Postgres (PgSlotLimiter) go with their containers, on a real engine.

The leak these reproduce: a container removed behind the service's back (``docker rm -f``,
an engine restart) kept its lease until the container's TTL (6 h), so after a few of them
a customer's next container waited for a slot that nobody held.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

import pytest
from sqlalchemy import text

from pipeline.db import Store
from pipeline.reaping import release_vanished
from pipeline.slots import PgSlotLimiter
from runner.errors import TransientError
from runner.sandbox import DockerSandbox, container_name, container_names
from runner.settings import Settings, load_settings

pytestmark = pytest.mark.docker


def _settings(env: dict[str, str], per_customer: int = 1) -> Settings:
    return load_settings({**env, "DEVTEAM_SANDBOX_MAX_CONTAINERS": "4",
                          "DEVTEAM_SANDBOX_MAX_CONTAINERS_PER_CUSTOMER": str(per_customer)})


@pytest.fixture
def limiter(env, store, docker_client) -> Callable[..., PgSlotLimiter]:
    """A limiter on this test's database; ``sees_engine=False``: one that cannot list the
    engine's containers (only the reaper, or the TTL, releases its vanished leases)."""

    def make(*, sees_engine: bool = True) -> PgSlotLimiter:
        names = functools.partial(container_names, docker_client.api) if sees_engine else None
        return PgSlotLimiter(_settings(env), store, asyncio.get_running_loop(), containers=names)

    return make


async def _leases(store: Store) -> dict[str, bool]:
    """holder → whether it is granted."""
    async with store.transaction() as session:
        rows = (await session.execute(text(
            "SELECT holder, granted_at IS NOT NULL FROM sandbox_leases"))).all()
    return {r[0]: bool(r[1]) for r in rows}


async def test_given_a_container_removed_behind_its_back_then_the_next_one_gets_its_slot(
    limiter, store, docker_client, runner_image, make_spec
):
    box = DockerSandbox(docker_client, image=runner_image, limiter=limiter(), slot_timeout=60)
    first, second = make_spec(task_id="1"), make_spec(task_id="2")
    await asyncio.to_thread(box.session, first)
    docker_client.api.remove_container(container_name(first), force=True)  # docker rm -f
    assert await _leases(store) == {container_name(first): True}  # the leak's start

    heard: list[str] = []
    session = await asyncio.to_thread(functools.partial(box.session, second,
                                                        on_wait=heard.append))

    # the customer's only slot was free again without waiting out the 60 s slot timeout
    assert session.run("echo ok", timeout=20).output_tail == "ok"
    assert await _leases(store) == {container_name(second): True}
    await asyncio.to_thread(box.remove, second)
    assert await _leases(store) == {}


async def test_given_a_vanished_container_when_the_reaper_runs_then_its_lease_is_released(
    env, limiter, store, docker_client, runner_image, make_spec
):
    blind = limiter(sees_engine=False)
    box = DockerSandbox(docker_client, image=runner_image, limiter=blind, slot_timeout=0)
    first, second = make_spec(task_id="1"), make_spec(task_id="2")
    await asyncio.to_thread(box.session, first)
    docker_client.api.remove_container(container_name(first), force=True)
    with pytest.raises(TransientError, match="holds 1 of its 1"):  # the leak, reproduced
        await asyncio.to_thread(box.session, second)

    released = await asyncio.to_thread(release_vanished, _settings(env))

    assert released == [container_name(first)]
    await asyncio.to_thread(box.session, second)
    assert await _leases(store) == {container_name(second): True}
    await asyncio.to_thread(box.remove, second)


async def test_leases_of_existing_containers_and_of_containers_being_made_stay(
    env, limiter, store, docker_client, runner_image, make_spec
):
    pg = limiter()
    box = DockerSandbox(docker_client, image=runner_image, limiter=pg)
    running = make_spec(task_id="1")
    await asyncio.to_thread(box.session, running)
    # granted, its container not made yet: its creator is still within its allowance
    await asyncio.to_thread(pg.acquire, "cust-b", "dt-being-made", 5)

    assert await asyncio.to_thread(pg.vacate) == []
    assert await asyncio.to_thread(release_vanished, _settings(env)) == []
    assert await _leases(store) == {container_name(running): True, "dt-being-made": True}
    await asyncio.to_thread(box.remove, running)
    await asyncio.to_thread(pg.release, "dt-being-made")


async def test_given_a_waiter_whose_worker_died_then_it_does_not_take_a_slot(
    limiter, store
):
    pg = limiter()
    await asyncio.to_thread(pg.acquire, "cust-a", "dt-held", 5)
    async with store.transaction() as session:  # what a waiter killed mid-wait leaves
        await session.execute(text(
            "INSERT INTO sandbox_leases (customer_id, holder, expires_at, alive_until, "
            "requested_at) VALUES ('cust-a', 'dt-dead-waiter', now() + interval '6 hours', "
            "now() - interval '1 second', now() - interval '31 seconds')"))
    await asyncio.to_thread(pg.release, "dt-held")

    await asyncio.to_thread(pg.acquire, "cust-a", "dt-next", 5)

    assert await _leases(store) == {"dt-next": True}
    await asyncio.to_thread(pg.release, "dt-next")
