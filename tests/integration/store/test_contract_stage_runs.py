"""The store port's writes of a stage run (claim, lease, finish), the reads the stages
make of recorded runs, error records, the event's task context and error-resolution
tasks: against asyncpg and the in-memory store alike."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from tests.integration.store.test_contract import CUSTOMER, PROJECT, URL, backend, port, start

from pipeline.store.executions import NewError
from pipeline.store.port import StorePort, Tx
from pipeline.store.projects import NewResolution
from pipeline.store.stage_runs import Finished, RunKey

__all__ = ["backend", "port"]  # the fixtures, shared with the main contract suite

ME, OTHER = "host:1:aaaaaa", "host:2:bbbbbb"


async def _execution(port: StorePort) -> uuid.UUID:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        _, execution_id = await start(tx, status="running")
    return execution_id


async def _ran(tx: Tx, key: RunKey, status: str, result: Any = None) -> int:
    """A run of ``key`` claimed and finished with ``status`` and ``result``."""
    claim = await tx.stage_runs.claim(key, command_id=1, owner=ME, lease_seconds=60)
    assert claim is not None
    started = await tx.stage_runs.finish(claim.id, ME, Finished(
        status=status, duration_ms=5, result=result))
    assert started is not None
    return claim.id


async def test_a_run_is_claimed_once_while_held_and_again_when_retried(port: StorePort) -> None:
    x = await _execution(port)
    key = RunKey(execution_id=x, task_id="1.1", stage="VERIFY", pass_no=1, attempt=1)
    async with port.tx() as tx:
        assert await tx.stage_runs.status(key) is None
        claim = await tx.stage_runs.claim(key, command_id=7, owner=ME, lease_seconds=60)
        assert claim is not None and claim.claims == 1
    async with port.tx() as tx:
        # a duplicate delivery, while the lease is live
        assert await tx.stage_runs.claim(key, command_id=8, owner=OTHER,
                                         lease_seconds=60) is None
        assert await tx.stage_runs.status(key) == "running"
        assert await tx.stage_runs.running(x) is True
        assert await tx.stage_runs.renew(claim.id, OTHER, 60) is None
        assert await tx.stage_runs.renew(claim.id, ME, 60) == "running"
        lost = Finished(status="succeeded", duration_ms=1, result={})
        assert await tx.stage_runs.finish(claim.id, OTHER, lost) is None
        started = await tx.stage_runs.finish(claim.id, ME, Finished(
            status="retrying", duration_ms=12, result={"n": 1},
            error={"classification": "transient", "message": "try again"},
            usage={"promptTokens": 3}))
        assert started is not None and started.tzinfo is not None
        assert await tx.stage_runs.status(key) == "retrying"
        assert await tx.stage_runs.running(x) is False
        # a retrying run gives its lease up: nothing to renew or finish
        assert await tx.stage_runs.renew(claim.id, ME, 60) is None
        assert await tx.stage_runs.finish(claim.id, ME, lost) is None
    async with port.tx() as tx:
        again = await tx.stage_runs.claim(key, command_id=9, owner=OTHER, lease_seconds=60)
        assert again is not None and (again.id, again.claims) == (claim.id, 2)
        assert await tx.stage_runs.finish(again.id, OTHER, Finished(
            status="succeeded", duration_ms=3, result={"n": 2})) is not None
    async with port.tx() as tx:
        # finished: a later delivery claims nothing
        assert await tx.stage_runs.claim(key, command_id=10, owner=ME,
                                         lease_seconds=60) is None
        assert await tx.stage_runs.status(key) == "succeeded"
        runs = await tx.stage_runs.of_execution(x)
    assert [(r.task_id, r.stage, r.attempt, r.status, r.duration_ms, r.result)
            for r in runs] == [("1.1", "VERIFY", 1, "succeeded", 3, {"n": 2})]


async def test_a_run_whose_lease_expired_is_taken_over(port: StorePort) -> None:
    x = await _execution(port)
    key = RunKey(execution_id=x, task_id="", stage="INIT")
    async with port.tx() as tx:
        dead = await tx.stage_runs.claim(key, command_id=1, owner=OTHER, lease_seconds=0)
        assert dead is not None
    async with port.tx() as tx:
        taken = await tx.stage_runs.claim(key, command_id=2, owner=ME, lease_seconds=60)
        assert taken is not None and (taken.id, taken.claims) == (dead.id, 2)
        # the worker that lost it can no longer renew or record
        assert await tx.stage_runs.renew(dead.id, OTHER, 60) is None
        assert await tx.stage_runs.renew(taken.id, ME, 60) == "running"


async def test_recorded_results_are_read_latest_first(port: StorePort) -> None:
    x = await _execution(port)

    def key(stage: str, task: str = "1.1", attempt: int = 1, pass_no: int = 1) -> RunKey:
        return RunKey(execution_id=x, task_id=task, stage=stage, pass_no=pass_no,
                      attempt=attempt)

    async with port.tx() as tx:
        await _ran(tx, key("SELECT", "#1"), "succeeded", {"task": {"id": "1.1", "n": 1}})
        await _ran(tx, key("SELECT", "#2"), "succeeded", {"task": {"id": "1.2"}})
        await _ran(tx, key("SELECT", "#3"), "succeeded", {"task": {"id": "1.1", "n": 3}})
        await _ran(tx, key("SETUP"), "succeeded",
                   {"baseline": {"key": "k1", "measures": {"tests": 3}}})
        await _ran(tx, key("SETUP", "1.2"), "succeeded", {"baseline": {"key": "k2"}})
        await _ran(tx, key("VERIFY"), "failed", {"n": 1})
        await _ran(tx, key("VERIFY", attempt=2), "succeeded", {"n": 2})
        assert await tx.stage_runs.claim(key("VERIFY", attempt=3), command_id=1, owner=ME,
                                         lease_seconds=60) is not None  # still running
    async with port.reads() as q:
        runs = q.stage_runs
        assert await runs.result(x, "1.1", "VERIFY", 1) == {"n": 2}
        assert await runs.result(x, "1.1", "VERIFY", 1, attempt=1) == {"n": 1}
        assert await runs.result(x, "1.1", "VERIFY", 1, attempt=3) is None
        assert await runs.result(x, "1.1", "VERIFY", 2) is None
        assert await runs.attempts(x, "1.1", "VERIFY") == 3
        assert await runs.attempts(x, "1.2", "VERIFY") == 0
        selected = await runs.selection(x, "1.1")
        assert selected == {"task": {"id": "1.1", "n": 3}}
        assert await runs.selection(x, "9.9") is None
        assert await runs.selects(x) == 3
        assert await runs.selects(uuid.uuid4()) == 0
        # the baseline measured, with its key; one without measures does not count
        assert await runs.baseline(x, "k1") == {"key": "k1", "measures": {"tests": 3}}
        assert await runs.baseline(x, "k2") is None
        # no VERIFY recorded measures yet: the baseline's
        assert await runs.latest_measures(x) == {"tests": 3}
    async with port.tx() as tx:
        await _ran(tx, key("VERIFY", "1.2"), "succeeded", {"measures": {"tests": 5}})
        await _ran(tx, key("VERIFY", "1.3"), "failed", {"measures": {"tests": 1}})
    async with port.reads() as q:
        assert await q.stage_runs.latest_measures(x) == {"tests": 5}
        assert await q.stage_runs.latest_measures(uuid.uuid4()) is None


async def test_an_error_record_is_written_and_reads_back(port: StorePort) -> None:
    x = await _execution(port)
    error_id = uuid.uuid4()
    async with port.tx() as tx:
        await tx.executions.record_error(NewError(
            id=error_id, execution_id=x, task_id=None, stage="INIT", classification="config",
            message="no task list", details={"path": "tasks_list.md"}, attempts=2))
    async with port.reads() as q:
        row = await q.executions.error(x, error_id)
        assert await q.executions.error_line(error_id) == "config: no task list"
    assert row is not None
    assert (row.task_id, row.stage, row.classification, row.message, row.details,
            row.attempts) == (None, "INIT", "config", "no task list",
                              {"path": "tasks_list.md"}, 2)


async def test_the_task_context_is_read_locked_and_replaced(port: StorePort) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        event_id, _ = await start(tx)
    async with port.tx() as tx:
        context = await tx.executions.lock_task_context(event_id)
        assert context == {"nodes": {}}
        await tx.executions.set_task_context(
            event_id, {**context, "tasks": {"1.1": {"status": "done"}}})
    async with port.reads() as q:
        event = await q.executions.event(event_id)
    assert event is not None
    assert event.task_context == {"nodes": {}, "tasks": {"1.1": {"status": "done"}}}
    with pytest.raises(LookupError):
        async with port.tx() as tx:
            await tx.executions.lock_task_context(uuid.uuid4())


async def test_resolution_tasks_are_added_once_ended_once_and_counted(port: StorePort) -> None:
    x = await _execution(port)
    async with port.tx() as tx:
        _, y = await start(tx, status="completed")
        mine, theirs = uuid.uuid4(), uuid.uuid4()
        for error_id, execution_id in ((mine, x), (theirs, y)):
            await tx.executions.record_error(NewError(
                id=error_id, execution_id=execution_id, task_id="1.1", stage="VERIFY",
                classification="verification", message="red", details={}, attempts=1))

        def resolution(task_id: str, error_id: uuid.UUID | None,
                       title: str = "Resolve") -> NewResolution:
            return NewResolution(project_id=PROJECT, task_id=task_id,
                                 task={"id": task_id, "title": title}, reason="failed",
                                 source_error_id=error_id, origin_task_id="1.1")

        await tx.projects.add_resolution(resolution("1.1-r1", mine))
        await tx.projects.add_resolution(resolution("1.1-r1", mine, "ignored"))  # taken
        await tx.projects.add_resolution(resolution("1.1-r2", mine))
        await tx.projects.add_resolution(resolution("1.1-r0", theirs))
    async with port.tx() as tx:
        row = await tx.projects.injection(PROJECT, "1.1-r1")
        assert row is not None
        assert (row.injection_type, row.status, row.origin_task_id, row.replace_task_id) == (
            "priority", "pending", "1.1", None)
        assert row.task == {"id": "1.1-r1", "title": "Resolve"}
        assert await tx.projects.injection(PROJECT, "nope") is None
        assert await tx.projects.resolutions(PROJECT, "1.1", x) == 2
        assert await tx.projects.resolutions(PROJECT, "1.1", y) == 1
        assert await tx.projects.resolutions(PROJECT, "2.1", x) == 0
        await tx.projects.end_injection(PROJECT, "1.1-r1", "done")
        await tx.projects.end_injection(PROJECT, "1.1-r2", "failed")
    async with port.tx() as tx:
        await tx.projects.end_injection(PROJECT, "1.1-r1", "failed")  # ended: stays done
        statuses = {r.task_id: (r.status, r.origin_task_id)
                    for r in await tx.projects.injections(PROJECT)}
        assert statuses == {"1.1-r1": ("done", "1.1"), "1.1-r2": ("failed", "1.1"),
                            "1.1-r0": ("pending", "1.1")}
        assert await tx.projects.resolutions(PROJECT, "1.1", x) == 2
        await tx.projects.review_injections(PROJECT)
        assert await tx.projects.resolutions(PROJECT, "1.1", x) == 0
