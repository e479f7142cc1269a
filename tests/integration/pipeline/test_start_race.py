"""Starts of one project racing each other (a double-submitted ``POST /events``): one
starts it, every other is refused as a start beside an active execution (409), never an
unexpected database error (500)."""

from __future__ import annotations

import asyncio

import pytest

from pipeline import commands
from pipeline.audit import Principal
from pipeline.lifecycle import Status, TransitionError

ME = Principal(user_id="alice", correlation_id="corr-race")


@pytest.mark.parametrize("in_unit", [False, True], ids=["alone", "in-a-unit"])
@pytest.mark.parametrize("url", [None, "file:///srv/acme/web.git"])
async def test_racing_starts_of_one_project_start_it_once_and_refuse_the_rest(
    store, url: str | None, in_unit: bool
) -> None:
    """``in_unit``: each start inside a unit of work, as an ``Idempotency-Key`` header's
    request runs (a losing start's failed insert spoils the unit's transaction)."""
    async with store.tx() as tx:
        await tx.projects.upsert("acme/web", "acme", "file:///srv/acme/web.git")

    async def start() -> object:
        try:
            if not in_unit:
                return await commands.start_execution(store, principal=ME,
                                                      project_id="acme/web",
                                                      repository_url=url)
            async with store.unit():
                return await commands.start_execution(store, principal=ME,
                                                      project_id="acme/web",
                                                      repository_url=url)
        except TransitionError as exc:
            return exc

    for _ in range(3):  # the race is not won the same way every time: run it a few times
        results = await asyncio.gather(*(start() for _ in range(8)))
        started = [r for r in results if isinstance(r, commands.StartResult)]
        refused = [r for r in results if isinstance(r, TransitionError)]
        assert len(started) == 1 and len(refused) == 7
        assert all(r.current in (Status.INITIALIZING,) for r in refused)
        async with store.reads() as q:
            latest = await q.executions.latest_for_project("acme/web")
        assert latest is not None and latest.status == "initializing"
        async with store.tx() as tx:  # end it, so the next round may start again
            await tx.executions.set_fields(latest.id, {"status": "completed"})
