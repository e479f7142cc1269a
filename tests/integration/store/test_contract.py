"""The store port's contract: every test runs against the asyncpg implementation (on a
fresh migrated database) and the in-memory one (unit tier), and asserts the same."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from pipeline.store.audit import NewAuditEntry
from pipeline.store.executions import (
    NewEvent,
    NewExecution,
    NewStart,
    Started,
    new_execution_update,
)
from pipeline.store.memory import MemoryStore
from pipeline.store.outbox import NewCommand
from pipeline.store.port import StorePort, Tx
from pipeline.store.projects import NewInjection
from pipeline.store.usage import UsageSums

CUSTOMER = "acme"
PROJECT = "acme/web"
URL = "https://git.example/acme/web.git"


@pytest.fixture(params=["memory", pytest.param("pg", marks=pytest.mark.sockets)])
def backend(request: pytest.FixtureRequest) -> str:
    """Which implementation; ``pg`` on a fresh migrated database of its own."""
    if request.param == "pg":
        request.getfixturevalue("env")
    return str(request.param)


@pytest.fixture
async def port(backend: str) -> AsyncIterator[StorePort]:
    if backend == "memory":
        yield MemoryStore()
        return
    from pipeline.db import Store
    from runner.settings import get_settings

    store = Store.from_settings(get_settings(), pool_size=2)
    try:
        yield store
    finally:
        await store.close()


async def start(tx: Tx, project: str = PROJECT, *, status: str = "initializing",
                key: str | None = None, digest: str | None = None,
                user: str = "ann") -> tuple[uuid.UUID, uuid.UUID]:
    """An event and its execution, as ``commands.start_execution`` writes them."""
    event_id, execution_id = uuid.uuid4(), uuid.uuid4()
    await tx.executions.insert_event(NewEvent(
        id=event_id, workflow_type="DEVTEAM_AUTOMATION", data={"projectId": project},
        task_context={"nodes": {}}, project_id=project, user_id=user, idempotency_key=key,
        idempotency_hash=digest, correlation_id="c-1"))
    await tx.executions.insert(NewExecution(
        id=execution_id, project_id=project, customer_id=project.partition("/")[0],
        event_id=event_id, user_id=user, status=status, stop_point="2.1", single_task_id=None,
        correlation_id="c-1"))
    return event_id, execution_id


async def test_a_project_is_created_read_locked_and_repointed(port: StorePort) -> None:
    async with port.tx() as tx:
        assert await tx.projects.get(PROJECT) is None
        assert await tx.projects.lock(PROJECT) is False
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
    async with port.tx() as tx:
        row = await tx.projects.get(PROJECT)
        assert row is not None
        assert (row.customer_id, row.repository_url, row.default_branch) == (CUSTOMER, URL, None)
        assert (row.verification, row.quota) == ({}, {})
        assert await tx.projects.lock(PROJECT) is True
        await tx.projects.upsert(PROJECT, "ignored", URL + "2")
    async with port.tx() as tx:
        row = await tx.projects.get(PROJECT)
        assert row is not None
        assert (row.customer_id, row.repository_url) == (CUSTOMER, URL + "2")


async def test_an_execution_reads_back_with_its_event(port: StorePort) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        event_id, execution_id = await start(tx)
    async with port.tx() as tx:
        row = await tx.executions.get(execution_id)
        assert row is not None
        assert (row.id, row.project_id, row.customer_id, row.event_id, row.status) == (
            execution_id, PROJECT, CUSTOMER, event_id, "initializing")
        assert (row.stop_point, row.completed_tasks, row.total_tasks, row.last_seq) == (
            "2.1", 0, 0, 0)
        assert row.pending_command is None and row.finished_at is None
        assert row.started_at.tzinfo is not None
        assert await tx.executions.get(uuid.uuid4()) is None
        locked = await tx.executions.get(execution_id, lock=True)
        assert locked == row
        event = await tx.executions.event(event_id)
        assert event is not None
        assert (event.workflow_type, event.data, event.task_context) == (
            "DEVTEAM_AUTOMATION", {"projectId": PROJECT}, {"nodes": {}})
        assert (event.project_id, event.correlation_id, event.execution_id) == (
            PROJECT, "c-1", execution_id)
        assert await tx.executions.event(uuid.uuid4()) is None


async def test_the_latest_execution_is_the_active_one_else_the_newest(port: StorePort) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        assert await tx.executions.latest_for_project(PROJECT) is None
        _, active = await start(tx, status="running")
    async with port.tx() as tx:
        _, newer_done = await start(tx, status="completed")
    async with port.tx() as tx:
        latest = await tx.executions.latest_for_project(PROJECT)
        assert latest is not None and latest.id == active
        locked = await tx.executions.latest_for_project(PROJECT, lock=True)
        assert locked is not None and locked.id == active
        assert await tx.executions.latest_for_project("acme/other") is None
        statuses = await tx.executions.statuses([PROJECT])
        status = statuses[PROJECT]
        assert status.execution.id == active
        assert (status.setup, status.wait) == (None, None)
        assert status.usage == UsageSums(implement_rounds=0, containers=0)
        assert await tx.executions.statuses(["acme/other"]) == {}
    assert newer_done != active


async def test_statuses_of_many_projects_are_read_at_once_each_its_own(
    port: StorePort,
) -> None:
    others = [f"acme/p{i}" for i in range(5)]
    started = {}
    async with port.tx() as tx:
        for project in others:
            await tx.projects.upsert(project, CUSTOMER, URL)
            _, started[project] = await start(tx, project, status="running")
    asked = [*others, "acme/never-ran", others[0], others[3]]  # unknown and repeated ones
    async with port.reads() as tx:
        statuses = await tx.executions.statuses(asked)
    assert set(statuses) == set(others)
    assert {p: s.execution.id for p, s in statuses.items()} == started
    assert {s.execution.project_id for s in statuses.values()} == set(others)
    async with port.reads() as tx:
        assert await tx.executions.statuses([]) == {}


async def test_a_prior_start_is_found_by_user_project_and_key(port: StorePort) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        event_id, execution_id = await start(tx, key="k1", digest="h1")
        first = await tx.outbox.enqueue(NewCommand(
            execution_id=execution_id, customer_id=CUSTOMER, actor="stage_init",
            payload={"stage": "INIT"}, correlation_id="c-1"))
        second = await tx.outbox.enqueue(NewCommand(
            execution_id=execution_id, customer_id=CUSTOMER, actor="stage_init",
            payload={"stage": "INIT"}, correlation_id="c-1", delay_seconds=5))
    assert second > first
    async with port.tx() as tx:
        prior = await tx.executions.prior_start("ann", PROJECT, "k1")
        assert prior is not None
        assert (prior.event_id, prior.execution_id, prior.command_id, prior.correlation_id,
                prior.idempotency_hash) == (event_id, execution_id, first, "c-1", "h1")
        assert await tx.executions.prior_start("bob", PROJECT, "k1") is None
        assert await tx.executions.prior_start("ann", "acme/other", "k1") is None
        assert await tx.executions.prior_start("ann", PROJECT, "k2") is None


async def test_notifications_take_consecutive_seqs_and_positions(port: StorePort) -> None:
    now = datetime.now(UTC)
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        await tx.projects.upsert("acme/api", CUSTOMER, URL)
        _, one = await start(tx)
        _, two = await start(tx, "acme/api")
        assert await tx.executions.lock_last_update(one) is None
        a = await tx.notifications.append(one, [("execution-update", {"status": "running"}),
                                                ("log", {"line": "x"})], created_at=now,
                                          last_update={"status": "running"})
        b = await tx.notifications.append(two, [("log", {"line": "y"})], created_at=now)
        c = await tx.notifications.append(one, [("log", {"line": "z"})], created_at=now)
    assert (a.first_seq, a.customer_id, a.project_id, a.created_at) == (1, CUSTOMER, PROJECT, now)
    assert (b.first_seq, b.project_id) == (1, "acme/api")
    assert c.first_seq == 3
    assert (b.first_pos, c.first_pos) == (a.first_pos + 2, a.first_pos + 3)
    async with port.tx() as tx:
        assert await tx.executions.lock_last_update(one) == {"status": "running"}
        assert await tx.executions.lock_last_update(two) is None
        row = await tx.executions.get(one)
        assert row is not None and row.last_seq == 3


async def test_a_transaction_that_raises_leaves_nothing(port: StorePort) -> None:
    async def failing() -> None:
        async with port.tx() as tx:
            await tx.projects.upsert(PROJECT, CUSTOMER, URL)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await failing()
    async with port.tx() as tx:
        assert await tx.projects.get(PROJECT) is None


async def test_a_unit_joins_its_transactions_and_commits_them_together(
    port: StorePort,
) -> None:
    async def failing() -> None:
        async with port.unit():
            async with port.tx() as tx:
                await tx.projects.upsert(PROJECT, CUSTOMER, URL)
            async with port.tx() as tx:
                assert await tx.projects.get(PROJECT) is not None
                raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await failing()
    async with port.tx() as tx:
        assert await tx.projects.get(PROJECT) is None
    async with port.unit():
        async with port.tx() as tx:
            await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        async with port.tx() as tx:
            await tx.projects.upsert("acme/api", CUSTOMER, URL)
    async with port.tx() as tx:
        assert await tx.projects.get(PROJECT) is not None
        assert await tx.projects.get("acme/api") is not None


async def test_audit_entries_read_back_per_execution(port: StorePort) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        _, execution_id = await start(tx)
        for action in ("execution.start", "execution.pause"):
            await tx.audit.record(NewAuditEntry(
                user_id="ann", action=action, project_id=PROJECT, execution_id=execution_id,
                correlation_id="c-1", details={"from": "a"}))
    async with port.tx() as tx:
        entries = await tx.audit.of_execution(execution_id)
        assert [(e.action, e.user_id, e.details) for e in entries] == [
            ("execution.start", "ann", {"from": "a"}), ("execution.pause", "ann", {"from": "a"})]
        assert entries[0].id < entries[1].id
        assert await tx.audit.of_execution(uuid.uuid4()) == []


LOCK, TTL = timedelta(seconds=60), timedelta(hours=6)


async def test_an_idempotency_key_is_claimed_once_finished_and_replayed(
    port: StorePort,
) -> None:
    async with port.tx() as tx:
        assert await tx.idempotency.lock("ann", "k") is None
        assert await tx.idempotency.insert("ann", "k", "h1", lock=LOCK, ttl=TTL) is True
        assert await tx.idempotency.insert("ann", "k", "h2", lock=LOCK, ttl=TTL) is False
        assert await tx.idempotency.insert("bob", "k", "h2", lock=LOCK, ttl=TTL) is True
    async with port.tx() as tx:
        row = await tx.idempotency.lock("ann", "k")
        assert row is not None
        assert (row.request_hash, row.status, row.locked, row.expired) == (
            "h1", "in_flight", True, False)
        assert (row.response_status, row.response_headers, row.response_body) == (
            None, None, None)
        await tx.idempotency.finish("ann", "k", 202, {"content-type": "application/json"},
                                    b'{"ok":true}')
        await tx.idempotency.release("ann", "k")  # finished: stays
    async with port.tx() as tx:
        row = await tx.idempotency.lock("ann", "k")
        assert row is not None
        assert (row.status, row.response_status, row.response_headers, row.response_body) == (
            "completed", 202, {"content-type": "application/json"}, b'{"ok":true}')
        await tx.idempotency.release("bob", "k")  # in flight: freed
        assert await tx.idempotency.lock("bob", "k") is None


async def test_an_idempotency_lock_expires_is_renewed_and_retaken(port: StorePort) -> None:
    async with port.tx() as tx:
        await tx.idempotency.insert("ann", "k", "h1", lock=timedelta(seconds=-1), ttl=TTL)
        row = await tx.idempotency.lock("ann", "k")
        assert row is not None and (row.locked, row.expired) == (False, False)
        await tx.idempotency.renew("ann", "k", lock=LOCK)
        row = await tx.idempotency.lock("ann", "k")
        assert row is not None and row.locked is True
        await tx.idempotency.retake("ann", "k", "h2", lock=LOCK, ttl=timedelta(seconds=-1))
        row = await tx.idempotency.lock("ann", "k")
        assert row is not None
        assert (row.request_hash, row.status, row.expired) == ("h2", "in_flight", True)
        await tx.idempotency.insert("bob", "k", "h", lock=LOCK, ttl=TTL)
    async with port.tx() as tx:
        assert await tx.idempotency.sweep() == 1
        assert await tx.idempotency.lock("ann", "k") is None
        assert await tx.idempotency.lock("bob", "k") is not None




def new_start(project: str = PROJECT, *, key: str | None = None,
              at: datetime | None = None) -> NewStart:
    event_id, execution_id = uuid.uuid4(), uuid.uuid4()
    execution = NewExecution(
        id=execution_id, project_id=project, customer_id=CUSTOMER, event_id=event_id,
        user_id="ann", status="initializing", stop_point=None, single_task_id="1.1",
        correlation_id="c-2")
    return NewStart(
        event=NewEvent(id=event_id, workflow_type="DEVTEAM_AUTOMATION",
                       data={"projectId": project}, task_context={"nodes": {}},
                       project_id=project, user_id="ann", idempotency_key=key,
                       idempotency_hash="h" if key else None, correlation_id="c-2"),
        execution=execution,
        command=NewCommand(execution_id=execution_id, customer_id=CUSTOMER,
                           actor="stage_init", payload={"stage": "INIT"}, correlation_id="c-2"),
        audit=NewAuditEntry(user_id="ann", action="execution.start", project_id=project,
                            execution_id=execution_id, correlation_id="c-2",
                            details={"eventId": str(event_id)}),
        kind="execution-update", payload=new_execution_update(execution),
        created_at=at or datetime.now(UTC))


async def _start(tx: Any, new: NewStart) -> Started:
    """``start_checked`` of a start that must go through."""
    attempt = await tx.executions.start_checked(new)
    assert attempt.started is not None, attempt
    return attempt.started


async def test_a_start_writes_event_execution_command_audit_and_first_update(
    port: StorePort,
) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        new = new_start(key="k")
        started = await _start(tx, new)
    row, ex = started.execution, new.execution
    assert (row.id, row.event_id, row.status, row.single_task_id, row.last_seq) == (
        ex.id, ex.event_id, "initializing", "1.1", 1)
    assert row.update_payload() == new.payload
    async with port.tx() as tx:
        assert await tx.executions.get(ex.id) == row
        event = await tx.executions.event(ex.event_id)
        assert event is not None and event.execution_id == ex.id
        prior = await tx.executions.prior_start("ann", PROJECT, "k")
        assert prior is not None and prior.command_id == started.command_id
        assert [a.action for a in await tx.audit.of_execution(ex.id)] == ["execution.start"]
        assert await tx.executions.lock_last_update(ex.id) == new.payload
        more = await tx.notifications.append(ex.id, [("log", {"line": "x"})],
                                             created_at=datetime.now(UTC))
        assert (more.first_seq, more.first_pos) == (2, started.pos + 1)


async def test_a_start_whose_parts_disagree_is_refused(port: StorePort) -> None:
    new = new_start()
    wrong = NewStart(**{**msgspec.structs.asdict(new),
                        "audit": msgspec.structs.replace(new.audit, user_id="bob")})

    async def write() -> None:
        async with port.tx() as tx:
            await tx.projects.upsert(PROJECT, CUSTOMER, URL)
            await _start(tx, wrong)

    with pytest.raises(ValueError, match=r"audit\.user_id"):
        await write()
    async with port.tx() as tx:
        assert await tx.executions.get(new.execution.id) is None


async def test_executions_are_listed_by_user_scope_and_activity(port: StorePort) -> None:
    async with port.tx() as tx:
        for project in (PROJECT, "acme/api", "beta/app"):
            await tx.projects.upsert(project, project.partition("/")[0], URL)
        _, ann_done = await start(tx, status="completed")
    async with port.tx() as tx:
        _, ann_active = await start(tx, status="running")
        _, bob_api = await start(tx, "acme/api", status="running", user="bob")
        _, bob_beta = await start(tx, "beta/app", status="failed", user="bob")

    async def ids(**kwargs: Any) -> list[uuid.UUID]:
        async with port.reads() as q:
            args: dict[str, Any] = {"user_id": None, "project_ids": None,
                                    "customer_ids": None, "active_only": False,
                                    "limit": 50, **kwargs}
            return [r.id for r in await q.executions.list_for(**args)]

    assert set(await ids()) == {ann_done, ann_active, bob_api, bob_beta}
    assert (await ids(user_id="ann"))[0] == ann_active  # newest first
    assert set(await ids(user_id="ann")) == {ann_done, ann_active}
    assert await ids(user_id="ann", active_only=True) == [ann_active]
    assert set(await ids(active_only=True)) == {ann_active, bob_api}
    assert await ids(project_ids=["acme/api"]) == [bob_api]  # no customers given
    assert await ids(customer_ids=["beta"]) == [bob_beta]  # no projects given
    assert await ids(user_id="bob", customer_ids=["acme"], active_only=True) == [bob_api]
    assert set(await ids(project_ids=["acme/api"], customer_ids=["beta"])) == {
        bob_api, bob_beta}
    assert await ids(project_ids=[], customer_ids=[]) == []
    assert await ids(user_id="bob", project_ids=[PROJECT], customer_ids=[]) == []
    assert len(await ids(limit=1)) == 1


async def _error(port: StorePort, tx: Tx, execution_id: uuid.UUID, error_id: uuid.UUID) -> None:
    """An error record, as the pipeline writes it, set down directly: these tests read
    errors and need fixed fields, not the write path (``executions.record_error`` has a
    contract test of its own)."""
    when = datetime.now(UTC)
    if isinstance(port, MemoryStore):
        port.tables.errors.append({
            "id": error_id, "execution_id": execution_id, "task_id": "1.1", "stage": "VERIFY",
            "classification": "verification", "message": "coverage 61% < 80%",
            "details": {"k": [1]}, "attempts": 2, "created_at": when})
        return
    await tx.conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO errors (id, execution_id, task_id, stage, classification, message, "
        "details, attempts, created_at) VALUES ($1, $2, '1.1', 'VERIFY', 'verification', "
        "'coverage 61% < 80%', '{\"k\": [1]}'::jsonb, 2, $3)", error_id, execution_id, when)


async def test_an_error_record_reads_back_only_under_its_execution(port: StorePort) -> None:
    error_id = uuid.uuid4()
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        _, execution_id = await start(tx)
        _, other = await start(tx, status="completed")
        await _error(port, tx, execution_id, error_id)
    async with port.reads() as q:
        row = await q.executions.error(execution_id, error_id)
        assert row is not None
        assert (row.id, row.execution_id, row.task_id, row.stage, row.classification) == (
            error_id, execution_id, "1.1", "VERIFY", "verification")
        assert (row.message, row.details, row.attempts, row.project_id) == (
            "coverage 61% < 80%", {"k": [1]}, 2, PROJECT)
        assert await q.executions.error(other, error_id) is None
        assert await q.executions.error(execution_id, uuid.uuid4()) is None


async def test_settable_fields_of_an_execution_change_and_others_are_refused(
    port: StorePort,
) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        _, execution_id = await start(tx, status="running")
    async with port.tx() as tx:
        await tx.executions.set_fields(execution_id, {
            "status": "paused", "pause_reason": "user", "completed_tasks": 2,
            "pending_command": {"stage": "SELECT", "attempt": 1}, "branch": "task/1"})
        row = await tx.executions.get(execution_id)
        assert row is not None
        assert (row.status, row.pause_reason, row.completed_tasks, row.branch) == (
            "paused", "user", 2, "task/1")
        assert row.pending_command == {"stage": "SELECT", "attempt": 1}
        await tx.executions.set_fields(execution_id, {"pending_command": None})
        await tx.executions.set_fields(execution_id, {})
        row = await tx.executions.get(execution_id)
        assert row is not None and row.pending_command is None and row.status == "paused"
    for bad in ({"id": uuid.uuid4()}, {"last_seq": 9}, {"status = 'x', user_id": "y"}):
        with pytest.raises(ValueError, match="not a settable execution column"):
            async with port.tx() as tx:
                await tx.executions.set_fields(execution_id, bad)


async def _injected(port: StorePort, tx: Tx, task_id: str, status: str,
                    from_error: bool, kind: str = "priority") -> None:
    """An injected task, set down directly in any status the test needs (the port's
    ``projects.add_resolution`` writes only pending ones)."""
    source = uuid.uuid4() if from_error else None
    task = {"description": f"do {task_id}"}
    if isinstance(port, MemoryStore):
        port.tables.injected_tasks.append({
            "project_id": PROJECT, "task_id": task_id, "status": status,
            "source_error_id": source, "injection_type": kind, "position": None,
            "replace_task_id": None, "task": task})
        return
    await tx.conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO injected_tasks (project_id, task_id, injection_type, task, reason, "
        "status, source_error_id, created_by) VALUES ($1, $2, $5, $6::jsonb, 'r', "
        "$3, $4, 'ann')", PROJECT, task_id, status, source, kind, msgspec.json.encode(
            task).decode())


async def _injected_statuses(port: StorePort, tx: Tx) -> dict[str, str]:
    if isinstance(port, MemoryStore):
        return {t["task_id"]: t["status"] for t in port.tables.injected_tasks}
    rows = await tx.conn.fetch(  # type: ignore[attr-defined]
        "SELECT task_id, status FROM injected_tasks WHERE project_id = $1", PROJECT)
    return {r["task_id"]: r["status"] for r in rows}


async def test_reviewing_marks_ended_error_resolutions_only(port: StorePort) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        for task_id, status, from_error in (("#e1", "done", True), ("#e2", "failed", True),
                                            ("#e3", "pending", True), ("#p1", "done", False)):
            await _injected(port, tx, task_id, status, from_error)
        await tx.projects.review_injections(PROJECT)
        assert await _injected_statuses(port, tx) == {
            "#e1": "reviewed", "#e2": "reviewed", "#e3": "pending", "#p1": "done"}


async def test_commands_are_claimed_in_turn_dispatched_completed_and_requeued(
    port: StorePort,
) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        await tx.projects.upsert("beta/app", "beta", URL)
        _, one = await start(tx)
        _, two = await start(tx, "beta/app")

        async def enqueue(execution: uuid.UUID, customer: str, delay: float = 0) -> int:
            return await tx.outbox.enqueue(NewCommand(
                execution_id=execution, customer_id=customer, actor="stage_select",
                payload={"execution_id": str(execution), "stage": "SELECT", "task_id": "",
                         "attempt": 1}, correlation_id="c-1", delay_seconds=delay))

        a1, a2, a3 = [await enqueue(one, CUSTOMER) for _ in range(3)]
        b1 = await enqueue(two, "beta")
        await enqueue(two, "beta", delay=3600)  # not due
    async with port.tx() as tx:
        loaded = await tx.outbox.load(a1)
        assert loaded is not None
        assert (loaded.customer_id, loaded.correlation_id, loaded.payload["stage"]) == (
            CUSTOMER, "c-1", "SELECT")
        assert await tx.outbox.load(10**9) is None
        claimed = await tx.outbox.claim_batch(per_customer=2, batch=10)
        # round-robin: each customer's first, then acme's second; the third waits its turn
        assert [(c.id, c.actor) for c in claimed] == [
            (a1, "stage_select"), (b1, "stage_select"), (a2, "stage_select")]
        await tx.outbox.mark_dispatched([c.id for c in claimed])
    async with port.tx() as tx:
        assert await tx.outbox.claim_batch(per_customer=2, batch=10) == []  # at their cap
        await tx.outbox.complete(a1)
        await tx.outbox.complete(a1)
        assert [c.id for c in await tx.outbox.claim_batch(per_customer=2, batch=10)] == [a3]
        fleet = await tx.outbox.fleet()
        assert (fleet.backlog, fleet.executions) == (2, {"initializing": 2})
        assert (fleet.running, fleet.waiting) == ({}, {})
        # dispatched long ago (a negative grace) and nobody runs it: lost, sent again
        assert sorted(await tx.outbox.requeue_stale(grace_seconds=-60)) == [a2, b1]
        assert await tx.outbox.requeue_stale(grace_seconds=-60) == []
        assert (await tx.outbox.fleet()).backlog == 4


async def test_injected_tasks_read_back_oldest_first_with_their_progress(
    port: StorePort,
) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        for task_id, status, kind in (("#1", "done", "priority"), ("#2", "pending", "priority"),
                                      ("#3", "pending", "replace"), ("#4", "failed", "priority"),
                                      ("#5", "cancelled", "priority")):
            await _injected(port, tx, task_id, status, False, kind)
    async with port.reads() as q:
        rows = await q.projects.injections(PROJECT)
        assert [(r.task_id, r.status, r.injection_type) for r in rows] == [
            ("#1", "done", "priority"), ("#2", "pending", "priority"),
            ("#3", "pending", "replace"), ("#4", "failed", "priority")]
        assert rows[0].task == {"description": "do #1"}
        assert await q.projects.injected_progress(PROJECT) == (1, 2)
        assert await q.projects.injected_progress("acme/other") == (0, 0)
        assert await q.projects.injections("acme/other") == []


async def _stage_run(port: StorePort, tx: Tx, execution_id: uuid.UUID, task: str, stage: str,
                     status: str, pass_no: int = 1) -> None:
    """A stage run in any status, set down directly (``stage_runs.claim``/``finish``
    cannot leave, say, a running run without a lease)."""
    if isinstance(port, MemoryStore):
        port.tables.stage_runs.append({
            "id": len(port.tables.stage_runs) + 1, "execution_id": execution_id,
            "task_id": task, "stage": stage, "attempt": 1, "pass_no": pass_no,
            "status": status, "lease_until": None})
        return
    await tx.conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO stage_runs (execution_id, task_id, stage, pass_no, attempt, status) "
        "VALUES ($1, $2, $3, $4, 1, $5)", execution_id, task, stage, pass_no, status)


async def test_a_tasks_passes_and_completion_are_read_from_its_stage_runs(
    port: StorePort,
) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        _, x = await start(tx, status="running")
        for stage, status, pass_no in (("PREP", "succeeded", 1), ("PREP", "succeeded", 2),
                                       ("DONE", "failed", 2)):
            await _stage_run(port, tx, x, "1.1", stage, status, pass_no)
        await _stage_run(port, tx, x, "1.2", "DONE", "succeeded")
    async with port.reads() as q:
        assert await q.stage_runs.passes(x, "1.1") == 2
        assert await q.stage_runs.passes(x, "1.2") == 0
        assert await q.stage_runs.done(x, "1.1") is False
        assert await q.stage_runs.done(x, "1.2") is True
        assert await q.stage_runs.running(x) is False


async def test_a_checkout_records_the_branch_and_keeps_a_configured_list_path(
    port: StorePort,
) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        await tx.projects.record_checkout(PROJECT, "main", "tasks_list.md")
        await tx.projects.record_checkout(PROJECT, "trunk", "docs/tasks_list.md")
        row = await tx.projects.get(PROJECT)
        assert row is not None
        assert (row.default_branch, row.task_list_path) == ("trunk", "tasks_list.md")


async def test_an_injected_task_is_named_by_its_id_and_pending(port: StorePort) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        first = await tx.projects.inject(NewInjection(
            project_id=PROJECT, injection_type="priority", position=None,
            replace_task_id=None, task={"description": "fix it"}, reason="r",
            created_by="ann"))
        second = await tx.projects.inject(NewInjection(
            project_id=PROJECT, injection_type="positional", position=2,
            replace_task_id=None, task={"description": "then this"}, reason="r",
            created_by="ann"))
    assert first == (f"inj-{first[1]}", first[1]) and second[1] > first[1]
    async with port.reads() as q:
        rows = await q.projects.injections(PROJECT)
    assert [(r.task_id, r.injection_type, r.position, r.status, r.task) for r in rows] == [
        (first[0], "priority", None, "pending", {"description": "fix it"}),
        (second[0], "positional", 2, "pending", {"description": "then this"})]


async def test_an_executions_history_reads_back_runs_summaries_and_error_lines(
    port: StorePort,
) -> None:
    error_id = uuid.uuid4()
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        new = new_start()
        started = await _start(tx, new)
        x = started.execution.id
        await _stage_run(port, tx, x, "", "INIT", "succeeded")
        await _stage_run(port, tx, x, "1.1", "PREP", "running", pass_no=2)
        await _error(port, tx, x, error_id)
    async with port.reads() as q:
        runs = await q.stage_runs.of_execution(x)
        assert [(r.task_id, r.stage, r.pass_no, r.attempt, r.status, r.result) for r in runs] == [
            ("", "INIT", 1, 1, "succeeded", None), ("1.1", "PREP", 2, 1, "running", None)]
        assert await q.stage_runs.of_execution(uuid.uuid4()) == []
        assert await q.executions.task_summaries(x) == {}  # the event has no tasks yet
        assert await q.executions.task_summaries(uuid.uuid4()) == {}
        assert await q.executions.error_line(error_id) == "verification: coverage 61% < 80%"
        assert await q.executions.error_line(uuid.uuid4()) is None


async def test_task_summaries_are_the_events_tasks(port: StorePort) -> None:
    new = new_start()
    tasks = {"1.1": {"title": "Add x", "status": "done", "attempts": 2}}
    event = msgspec.structs.replace(new.event, task_context={"nodes": {}, "tasks": tasks})
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        await _start(tx, msgspec.structs.replace(new, event=event))
    async with port.reads() as q:
        assert await q.executions.task_summaries(new.execution.id) == tasks


async def test_every_way_into_the_port_reads_what_was_committed(port: StorePort) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        _, execution_id = await start(tx)
    # a snapshot (several reads, one view), a single read and a one-statement write all
    # see the committed rows
    async with port.snapshot() as snap:
        row = await snap.executions.get(execution_id)
        project = await snap.projects.get(PROJECT)
    assert row is not None
    assert row.project_id == PROJECT
    assert project is not None
    assert project.repository_url == URL
    async with port.reads() as q:
        again = await q.executions.get(execution_id)
    assert again is not None
    assert again.id == execution_id
    async with port.statement() as alone:
        assert await alone.projects.get(PROJECT) is not None
