"""Pause, resume, stop and stop points, observed through the database and the frames."""

from __future__ import annotations

import asyncio
import time
import uuid

import psutil
from sqlalchemy import text
from tests.e2e.checks import assert_remote_complete, containers_of, frames, stage_runs, working_copy
from tests.e2e.conftest import start, wait_status

from devtools.demo.sample import create_sample, model_script
from devtools.scripted_model import ScriptedModelServer, parse_script
from pipeline import commands
from pipeline.audit import Principal

PROJECT = "demo/calc"
ME = Principal(user_id="tester", correlation_id="control-test")


async def _wait_stage(store, execution, task_id: str, stage: str, status: str = "running",
                      timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with store.transaction() as session:
            found = (await session.execute(text(
                "SELECT 1 FROM stage_runs WHERE execution_id = :e AND task_id = :t AND stage = :s "
                "AND status = :st"), {"e": execution, "t": task_id, "s": stage, "st": status}
            )).scalar_one_or_none()
        if found:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{task_id} {stage} never {status}")


async def _started_stages(store, execution) -> int:
    async with store.transaction() as session:
        return int((await session.execute(text(
            "SELECT count(*) FROM stage_runs WHERE execution_id = :e"), {"e": execution}
        )).scalar_one())


async def _wait_parked(store, execution, timeout: float = 120) -> None:
    """Until the execution holds its next command and the outbox holds none of its own."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with store.transaction() as session:
            parked = (await session.execute(text(
                "SELECT x.pending_command IS NOT NULL AND NOT EXISTS (SELECT 1 FROM outbox o "
                "WHERE o.execution_id = x.id AND o.completed_at IS NULL) "
                "FROM executions x WHERE x.id = :e"), {"e": execution})).scalar_one()
        if parked:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("the paused execution never parked its next command")


async def test_stop_point_then_user_pause_and_resume(store, sample, pipeline_env, procs):
    procs.relay()
    procs.worker(threads=4)
    execution = await start(store, PROJECT, sample.url, stop_point="2.1")
    # The stop point pauses before 2.1 starts, with 1.1 and 1.2 done
    row = await wait_status(store, execution, {"paused", "completed", "error"})
    assert (row["status"], row["pause_reason"], row["stop_point"]) == (
        "paused", "stop_point", None)
    runs = await stage_runs(store, execution)
    assert {r["task_id"] for r in runs if r["stage"] == "DONE"} == {"1.1", "1.2"}
    assert not [r for r in runs if r["task_id"] == "2.1"]
    assert row["pending_command"]["stage"] == "PREP"
    # Resume continues with 2.1; a user pause during 2.2 lets the running stage finish
    resumed = await commands.resume(store, principal=ME, project_id=PROJECT)
    assert (resumed.previous_status, resumed.status) == ("paused", "running")
    await _wait_stage(store, execution, "2.2", "IMPLEMENT")
    paused = await commands.pause(store, principal=ME, project_id=PROJECT)
    assert paused.status == "paused"
    await _wait_stage(store, execution, "2.2", "IMPLEMENT", status="succeeded")
    settled = await _started_stages(store, execution)
    # Nothing new while paused: once the next stage is parked in the execution row and no
    # command of this execution is left in the outbox, nothing can start until a resume
    # (waiting on that state, not on a window of time)
    await _wait_parked(store, execution)
    assert await _started_stages(store, execution) == settled
    async with store.transaction() as session:
        pending = (await session.execute(text(
            "SELECT status, pause_reason, pending_command FROM executions WHERE id = :e"),
            {"e": execution})).one()
    assert pending[0] == "paused" and pending[1] == "user"
    assert pending[2]["stage"] == "VERIFY" and pending[2]["attempt"] == 1
    updates = [f["payload"] for f in await frames(store, execution)
               if f["type"] == "execution-update"]
    assert {"status": "paused", "pauseReason": "stop_point"}.items() <= next(
        u for u in updates if u.get("pauseReason") == "stop_point").items()
    assert any(u.get("pauseReason") == "user" for u in updates)
    await commands.resume(store, principal=ME, project_id=PROJECT)
    row = await wait_status(store, execution, {"completed", "error", "stopped"}, timeout=600)
    assert row["status"] == "completed"
    assert_remote_complete(sample, ["1.1", "1.2", "2.1", "2.2", "2.3", "2.4"])


def _aider_processes(workdir: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            if "aider" in cmd and workdir in cmd:
                found.append(proc.info["pid"])
        except (psutil.Error, TypeError):
            continue
    return found


async def test_stop_cancels_the_running_tool_and_cleans_up(store, tmp_path, pipeline_env, procs):
    # A model that takes a minute to answer task 1.1: only a cancellation ends it sooner
    script = model_script().replace('reply = "Implementing task 1.1."',
                                    'reply = "Implementing task 1.1."\ndelay_seconds = 60')
    slow = create_sample(tmp_path / "slow", script=script)
    with ScriptedModelServer(parse_script(script)) as model:
        procs.env["DEVTEAM_MODEL_API_BASE"] = model.url  # the worker reads it at start
        procs.relay()
        procs.worker(threads=4)
        execution = await start(store, PROJECT, slow.url)
        await _wait_stage(store, execution, "1.1", "IMPLEMENT")
        # Aider is running once it has asked the model about 1.1 (the answer takes a minute)
        deadline = time.monotonic() + 120
        while not any(r.task_id == "1.1" for r in model.model.requests):
            assert time.monotonic() < deadline, "Aider never asked the model about 1.1"
            await asyncio.sleep(0.05)
        workdir = str(working_copy(PROJECT, execution))
        result = await commands.stop(store, principal=ME, project_id=PROJECT)
        assert (result.previous_status, result.status) == ("running", "stopping")
        row = await wait_status(store, execution, {"stopped", "completed", "error"}, timeout=60)
    assert row["status"] == "stopped"
    runs = await stage_runs(store, execution)
    implement = [r for r in runs if r["stage"] == "IMPLEMENT"]
    assert [r["status"] for r in implement] == ["cancelled"]
    assert _aider_processes(workdir) == []
    assert containers_of(execution) == []
    assert not working_copy(PROJECT, execution).exists()
    got = await frames(store, execution)
    completion = [f["payload"] for f in got if f["type"] == "completion"]
    assert completion and completion[0]["status"] == "stopped"
    assert [f["seq"] for f in got] == list(range(1, len(got) + 1))


async def test_a_paused_execution_can_be_stopped(store, sample, pipeline_env, procs):
    procs.relay()
    procs.worker(threads=4)
    execution = await start(store, PROJECT, sample.url, stop_point="1.2")
    row = await wait_status(store, execution, {"paused", "completed", "error"})
    assert row["status"] == "paused"
    await commands.stop(store, principal=ME, project_id=PROJECT)
    row = await wait_status(store, execution, {"stopped", "error"}, timeout=60)
    assert row["status"] == "stopped" and row["pending_command"] is None
    assert containers_of(execution) == []
    # a stopped project can be initialised again
    again = await commands.start_execution(
        store, principal=Principal(user_id="tester", correlation_id=uuid.uuid4().hex),
        project_id=PROJECT)
    assert again.status == "initializing"
