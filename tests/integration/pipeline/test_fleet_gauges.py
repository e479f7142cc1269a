"""The relay's fleet gauges: outbox backlog and the age of its oldest due command,
executions by status and sandbox slots per customer, read from Postgres; dispatches
counted as the relay sends them."""

from __future__ import annotations

from sqlalchemy import text

from pipeline import metrics
from pipeline.audit import Principal
from pipeline.broker import reset_broker
from pipeline.commands import start_execution
from pipeline.relay import Relay
from runner.settings import get_settings

ME = Principal(user_id="alice", correlation_id="corr-fleet")


async def test_backlog_age_executions_and_slots_reach_the_gauges(store, env) -> None:
    # Given three started executions of two customers, their first commands undispatched
    for project in ("acme/one", "acme/two", "globex/one"):
        await start_execution(store, principal=ME, project_id=project,
                              repository_url="file:///x.git")
    async with store.transaction() as session:
        await session.execute(text(
            "UPDATE outbox SET available_at = now() - interval '90 seconds'"))
        await session.execute(text(
            "INSERT INTO sandbox_leases (customer_id, holder, expires_at, granted_at, "
            "alive_until) VALUES ('acme', 'c1', now() + interval '1 hour', now(), "
            "now() + interval '1 hour'), ('acme', 'c2', now() + interval '1 hour', now(), "
            "now() + interval '1 hour'), ('globex', 'c3', now() + interval '1 hour', NULL, "
            "now() + interval '1 hour')"))
    reset_broker()
    relay = Relay(get_settings(), store)
    try:
        figures = await relay.refresh_fleet()
        assert figures.backlog == 3
        assert 90 <= figures.oldest_age < 3600
        assert metrics.OUTBOX_BACKLOG._value.get() == 3
        assert metrics.OUTBOX_OLDEST_AGE._value.get() >= 90
        assert metrics.EXECUTIONS.labels("initializing")._value.get() == 3
        assert metrics.CONTAINERS_RUNNING.labels("acme")._value.get() == 2
        assert metrics.CONTAINERS_WAITING.labels("globex")._value.get() == 1

        # When the relay dispatches them and the slots are released
        before = metrics.RELAY_DISPATCHES._value.get()
        assert await relay.dispatch_once() == 3
        async with store.transaction() as session:
            await session.execute(text("DELETE FROM sandbox_leases"))
        figures = await relay.refresh_fleet()
    finally:
        reset_broker()
    # Then nothing waits, the dispatches were counted, and no customer keeps a count
    assert (figures.backlog, figures.oldest_age) == (0, 0)
    assert metrics.RELAY_DISPATCHES._value.get() - before == 3
    assert metrics.OUTBOX_BACKLOG._value.get() == 0
    assert metrics.OUTBOX_OLDEST_AGE._value.get() == 0
    assert metrics.CONTAINERS_RUNNING.labels("acme")._value.get() == 0
    assert metrics.CONTAINERS_WAITING.labels("globex")._value.get() == 0
