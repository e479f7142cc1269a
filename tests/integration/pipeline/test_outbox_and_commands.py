"""The command API's transactions, the transition table, the relay's fair claims and its
recovery of commands whose worker died or whose message was lost."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest
import redis
from sqlalchemy import text

from pipeline import commands, outbox
from pipeline.audit import Principal
from pipeline.broker import reset_broker
from pipeline.db import StoreUnavailable
from pipeline.lifecycle import Action, Status, TransitionError, target
from pipeline.outbox import StageCommand
from pipeline.relay import Relay
from runner.settings import get_settings

ME = Principal(user_id="alice", correlation_id="corr-1")


CONTRACT_TABLE = {
    # CONTRACTS.md "Statuses and transitions", written out: action -> (allowed from, goes to)
    "initialize": ({"idle", "stopped", "completed", "error"}, "initializing"),
    "pause": ({"running"}, "paused"),
    "resume": ({"paused"}, "running"),
    "stop": ({"running", "paused", "initializing"}, "stopping"),
}
STATUSES = ["idle", "initializing", "running", "paused", "stopping", "stopped", "completed",
            "error"]


@pytest.mark.parametrize("current", STATUSES)
@pytest.mark.parametrize("action", list(CONTRACT_TABLE))
def test_the_transition_table_of_the_contract(action: str, current: str) -> None:
    sources, goes_to = CONTRACT_TABLE[action]
    if current in sources:
        assert target(Action(action), Status(current)) == goes_to
    else:
        with pytest.raises(TransitionError) as err:
            target(Action(action), Status(current))
        assert err.value.current == current
        # the 409 body lists what the contract allows from here, in the table's order
        assert err.value.valid == [a for a, (src, _) in CONTRACT_TABLE.items() if current in src]
        assert str(err.value).startswith(f"cannot {action} an execution that is {current}")


async def test_start_writes_event_execution_command_frame_and_audit_in_one_go(store) -> None:
    started = await commands.start_execution(store, principal=ME, project_id="acme/web",
                                             repository_url="file:///x.git", stop_point="1.2")
    async with store.transaction() as session:
        event = (await session.execute(text("SELECT data, task_context, correlation_id FROM "
                                            "events WHERE id = :i"),
                                       {"i": started.event_id})).one()
        execution = (await session.execute(text(
            "SELECT status, stop_point, last_seq FROM executions WHERE id = :i"),
            {"i": started.execution_id})).one()
        command = (await session.execute(text(
            "SELECT actor, payload, dispatched_at FROM outbox WHERE id = :i"),
            {"i": started.command_id})).one()
        audit = (await session.execute(text(
            "SELECT user_id, action, correlation_id FROM audit_log"))).all()
    assert event[1]["metadata"]["correlationId"] == "corr-1" and event[2] == "corr-1"
    assert tuple(execution) == ("initializing", "1.2", 1)
    assert command[0] == "stage_init" and command[1]["stage"] == "INIT" and command[2] is None
    assert [tuple(a) for a in audit] == [("alice", "execution.start", "corr-1")]


async def test_a_second_start_while_active_is_a_transition_error_with_the_status(store) -> None:
    await commands.start_execution(store, principal=ME, project_id="acme/web",
                                   repository_url="file:///x.git")
    with pytest.raises(TransitionError) as err:
        await commands.start_execution(store, principal=ME, project_id="acme/web")
    assert err.value.current is Status.INITIALIZING
    async with store.transaction() as session:
        count = (await session.execute(text("SELECT count(*) FROM executions"))).scalar_one()
    assert count == 1  # nothing half-written


async def test_an_unknown_project_without_a_url_is_not_found(store) -> None:
    with pytest.raises(commands.ProjectNotFound):
        await commands.start_execution(store, principal=ME, project_id="acme/nothing")


async def test_the_same_options_idempotency_key_returns_the_first_start(store) -> None:
    first = await commands.start_execution(store, principal=ME, project_id="acme/web",
                                           repository_url="file:///x.git", idempotency_key="k")
    again = await commands.start_execution(store, principal=ME, project_id="acme/web",
                                           repository_url="file:///x.git", idempotency_key="k")
    assert (again.event_id, again.execution_id, again.replayed) == (
        first.event_id, first.execution_id, True)


async def _commands_for(store, customer: str, n: int) -> list[int]:
    ids = []
    async with store.tx() as tx:
        for i in range(n):
            ids.append(await outbox.enqueue(
                tx, StageCommand(execution_id=str(uuid.uuid4()), stage="SELECT",
                                      task_id=f"#{i}"),
                customer_id=customer, correlation_id="c"))
    return ids


async def test_claims_are_fair_between_customers_and_capped_per_customer(store) -> None:
    # Given a customer with ten queued commands and one with two
    big = await _commands_for(store, "big", 10)
    small = await _commands_for(store, "small", 2)
    # When the relay claims with at most 3 in flight per customer
    async with store.tx() as tx:
        first = await outbox.claim_batch(tx, per_customer=3)
        await outbox.mark_dispatched(tx, [i for i, _ in first])
    # Then the small customer is not starved and the big one is capped
    claimed = [i for i, _ in first]
    assert set(small) <= set(claimed)
    assert len([i for i in claimed if i in big]) == 3
    assert claimed[:2] == [big[0], small[0]]  # interleaved, oldest first
    async with store.tx() as tx:
        assert await outbox.claim_batch(tx, per_customer=3) == []  # all at their cap
        await outbox.complete(tx, big[0])
        again = await outbox.claim_batch(tx, per_customer=3)
    assert [i for i, _ in again] == [big[3]]


async def test_stale_commands_are_dispatched_again(store) -> None:
    [lost] = await _commands_for(store, "acme", 1)
    async with store.transaction() as session:
        await session.execute(text(
            "UPDATE outbox SET dispatched_at = now() - interval '5 minutes' WHERE id = :i"),
            {"i": lost})
    async with store.tx() as tx:
        # a message nobody claimed within the grace period is sent again
        assert await outbox.requeue_stale(tx, grace_seconds=60) == [lost]
        assert await outbox.requeue_stale(tx, grace_seconds=60) == []


async def test_a_dead_workers_expired_lease_makes_its_command_dispatchable(store) -> None:
    started = await commands.start_execution(store, principal=ME, project_id="acme/web",
                                             repository_url="file:///x.git")
    async with store.transaction() as session:
        await session.execute(text(
            "UPDATE outbox SET dispatched_at = now() - interval '20 seconds' WHERE id = :i"),
            {"i": started.command_id})
        await session.execute(text(
            "INSERT INTO stage_runs (execution_id, task_id, stage, attempt, status, command_id, "
            "lease_owner, lease_until) VALUES (:e, '', 'INIT', 1, 'running', :c, 'dead:1:x', "
            "now() - interval '1 second')"),
            {"e": started.execution_id, "c": started.command_id})
    async with store.tx() as tx:
        assert await outbox.requeue_stale(tx, grace_seconds=600) == [started.command_id]


async def test_the_relay_sends_each_command_with_its_id_as_message_id(store, env) -> None:
    reset_broker()
    ids = await _commands_for(store, "acme", 3)
    relay = Relay(get_settings(), store)
    try:
        assert await relay.dispatch_once() == 3
        assert await relay.dispatch_once() == 0
    finally:
        reset_broker()
    client = redis.Redis.from_url(get_settings().redis.url)
    stored = client.hgetall(f"{get_settings().redis.namespace}:devteam_stages.msgs")
    client.close()
    messages = [msgspec.json.decode(v) for v in stored.values()]
    assert sorted(int(m["message_id"]) for m in messages) == sorted(ids)
    assert all(m["args"] == [int(m["message_id"])] for m in messages)
    async with store.transaction() as session:
        undispatched = (await session.execute(text(
            "SELECT count(*) FROM outbox WHERE dispatched_at IS NULL"))).scalar_one()
    assert undispatched == 0


async def test_the_relay_retries_a_failing_round_and_stops_when_asked_during_an_outage(
    store, env
) -> None:
    # Given a relay whose every round fails as if Postgres were gone
    reset_broker()
    relay = Relay(get_settings(), store)
    rounds: list[int] = []
    failing = asyncio.Event()

    async def unavailable() -> None:
        rounds.append(len(rounds))
        if len(rounds) >= 3:
            failing.set()
        raise StoreUnavailable("database unavailable")

    async def no_listen() -> None:
        await asyncio.Event().wait()

    relay._round = unavailable  # type: ignore[method-assign]
    relay._listen = no_listen  # type: ignore[method-assign]
    task = asyncio.create_task(relay.run())
    try:
        # When it has retried the round (backing off) and is then told to stop
        async with asyncio.timeout(60):
            await failing.wait()
        relay.stop()
        # Then run() returns instead of retrying forever
        await asyncio.wait_for(task, 60)
    finally:
        task.cancel()
        reset_broker()
    assert len(rounds) >= 3
