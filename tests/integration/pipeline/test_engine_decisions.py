"""The engine with stand-in handlers on the real database: what ``decide`` answers is what
gets stored (the execution row, the outbox, the error record, the frames).

The bug it reproduces: a FINALIZE that failed for good (a fatal error, out of retries)
was followed by nothing, so a stopped execution stayed ``stopping`` forever with no
command left, and its project could never start again.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from tests.e2e.checks import assert_frames_gapless, frames

from pipeline import commands
from pipeline.audit import Principal
from pipeline.engine import Engine
from pipeline.lifecycle import Stage, Status
from pipeline.outcome import Outcome, StageContext
from pipeline.services import Services
from runner.errors import ConfigError
from runner.settings import get_settings

ALICE = Principal(user_id="alice", correlation_id="corr-engine-1")


async def init_succeeds(ctx: StageContext) -> Outcome:
    return Outcome(next=ctx.then(Stage.SELECT, task_id="#1"),
                   execution={"status": Status.RUNNING.value, "total_tasks": 2})


async def finalize_fails(ctx: StageContext) -> Outcome:
    raise ConfigError("the working copy cannot be removed: permission denied")


async def commands_of(store, execution_id: uuid.UUID) -> list[tuple[int, str, bool]]:
    async with store.transaction() as session:
        rows = (await session.execute(text(
            "SELECT id, payload->>'stage', completed_at IS NOT NULL FROM outbox "
            "WHERE execution_id = :e ORDER BY id"), {"e": execution_id})).all()
    return [(int(r[0]), str(r[1]), bool(r[2])) for r in rows]


async def execution_row(store, execution_id: uuid.UUID) -> dict:
    async with store.transaction() as session:
        row = (await session.execute(text(
            "SELECT status, finished_at, pending_command, error_id FROM executions "
            "WHERE id = :e"), {"e": execution_id})).mappings().one()
    return dict(row)


async def test_a_finalize_that_fails_for_good_still_ends_a_stopped_execution(store) -> None:
    started = await commands.start_execution(
        store, principal=ALICE, project_id="acme/engine", repository_url="file:///nowhere.git")
    engine = Engine(Services(get_settings(), store),
                    {Stage.INIT: init_succeeds, Stage.FINALIZE: finalize_fails})
    assert await engine.run(started.command_id) == "succeeded"
    queued = await commands_of(store, started.execution_id)
    assert [(stage, done) for _, stage, done in queued] == [("INIT", True), ("SELECT", False)]

    await commands.stop(store, principal=ALICE, project_id="acme/engine")
    # the SELECT delivered now is not run: FINALIZE (stopped) is enqueued again (the stop
    # enqueued one too: the same stage run, so the second is a duplicate)
    select_id = queued[1][0]
    assert await engine.run(select_id) == "stopping"
    finalize = [cid for cid, stage, done in await commands_of(store, started.execution_id)
                if stage == Stage.FINALIZE and not done]
    assert len(finalize) == 2
    assert await engine.run(finalize[0]) == "failed"
    assert await engine.run(finalize[1]) == "duplicate"

    row = await execution_row(store, started.execution_id)
    assert row["status"] == "stopped" and row["finished_at"] is not None
    assert row["pending_command"] is None and row["error_id"] is not None
    assert not [c for c in await commands_of(store, started.execution_id) if not c[2]]
    got = await assert_frames_gapless(store, started.execution_id, "stopped")
    errors = [f["payload"] for f in got if f["type"] == "error"]
    assert [(e["stage"], e["classification"]) for e in errors] == [("FINALIZE", "config")]
    assert got[-1]["payload"]["totalTasks"] == 2
    # the project is free again
    again = await commands.start_execution(store, principal=ALICE, project_id="acme/engine")
    assert again.execution_id != started.execution_id


async def test_a_stage_failing_for_good_ends_the_execution_in_error(store) -> None:
    async def init_fails(ctx: StageContext) -> Outcome:
        raise ConfigError("the task list is not valid")

    async def finalize(ctx: StageContext) -> Outcome:
        return Outcome(execution={"status": ctx.execution.status, "pending_command": None},
                       frames=[("completion", {"status": ctx.execution.status,
                                               "completedTasks": 0, "totalTasks": 0,
                                               "durationMs": 1})])

    started = await commands.start_execution(
        store, principal=ALICE, project_id="acme/engine2", repository_url="file:///n.git")
    engine = Engine(Services(get_settings(), store),
                    {Stage.INIT: init_fails, Stage.FINALIZE: finalize})
    assert await engine.run(started.command_id) == "failed"
    row = await execution_row(store, started.execution_id)
    assert row["status"] == "error" and row["error_id"] is not None
    queued = await commands_of(store, started.execution_id)
    assert [(stage, done) for _, stage, done in queued] == [("INIT", True), ("FINALIZE", False)]
    assert await engine.run(queued[1][0]) == "succeeded"
    await assert_frames_gapless(store, started.execution_id, "error")


async def test_a_crashing_handler_is_retried_with_its_text_redacted(store) -> None:
    token = "ghp_" + "A1b2C3d4E5" * 4

    async def init_crashes(ctx: StageContext) -> Outcome:
        raise KeyError(f"lookup with {token} failed")

    started = await commands.start_execution(
        store, principal=ALICE, project_id="acme/engine3", repository_url="file:///n.git")
    engine = Engine(Services(get_settings(), store), {Stage.INIT: init_crashes})
    assert await engine.run(started.command_id) == "retrying"
    async with store.transaction() as session:
        run = (await session.execute(text(
            "SELECT status, error, lease_owner FROM stage_runs WHERE execution_id = :e"),
            {"e": started.execution_id})).mappings().one()
    assert run["status"] == "retrying" and run["lease_owner"] is None
    assert run["error"]["classification"] == "infrastructure"
    assert run["error"]["message"] == "internal error in INIT: KeyError"
    assert token not in str(run["error"]) and "failed" in run["error"]["details"]["exception"]
    # the same command again, after the first backoff (2 s), and the log says so
    queued = await commands_of(store, started.execution_id)
    assert [(stage, done) for _, stage, done in queued] == [("INIT", True), ("INIT", False)]
    got = await frames(store, started.execution_id)
    lines = [line for f in got if f["type"] == "execution-log" for line in f["payload"]["lines"]]
    assert any(line.startswith("INIT will be retried in 2s") for line in lines)
    assert all(token not in str(f["payload"]) for f in got)
