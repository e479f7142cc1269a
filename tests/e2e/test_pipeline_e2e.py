"""The demo's project done end to end through real Postgres, Redis, Docker, git and Aider,
and done right even when every message arrives twice or a worker is killed mid-stage."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from sqlalchemy import text
from tests.e2e.checks import (
    assert_frames_gapless,
    assert_remote_complete,
    assert_updates_honest,
    containers_of,
    stage_runs,
    working_copy,
)
from tests.e2e.conftest import start, wait_status

from devtools.demo.sample import INITIAL, create_sample
from pipeline.broker import get_broker, reset_broker, send
from runner.settings import get_settings

TASKS = ["1.1", "1.2", "2.1", "2.2", "2.3", "2.4"]
PROJECT = "demo/calc"


async def _assert_completed(store, sample, execution) -> None:
    assert_remote_complete(sample, TASKS)
    assert_updates_honest(await assert_frames_gapless(store, execution, "completed"))
    assert containers_of(execution) == []
    assert not working_copy(PROJECT, execution).exists()
    async with store.transaction() as session:
        context = (await session.execute(text(
            "SELECT e.task_context FROM events e JOIN executions x ON x.event_id = e.id "
            "WHERE x.id = :id"), {"id": execution})).scalar_one()
    assert {"SelectNode", "PrepNode", "SetupNode", "ImplementNode", "VerifyNode", "MergeNode",
            "PushNode", "UpdateTasklistNode", "DoneNode", "FinalizeNode"} <= set(context["nodes"])
    assert context["metadata"]["correlationId"]
    assert context["tasks"]["2.2"]["attempts"] == 2
    # every summary is under a task id (SELECT's too, not under its own "#<n>")
    assert not [key for key in context["tasks"] if key.startswith("#")]
    assert context["tasks"]["2.2"]["title"]
    assert context["tasks"]["2.2"]["setup"]["tool"] == "none"  # the calculator needs nothing


async def test_the_demo_project_completes_end_to_end(store, sample, pipeline_env, procs):
    procs.relay()
    procs.worker(threads=4)
    execution = await start(store, PROJECT, sample.url)
    row = await wait_status(store, execution, {"completed", "error", "stopped", "paused"},
                            timeout=600)
    assert row["status"] == "completed", row
    assert (row["completed_tasks"], row["total_tasks"]) == (6, 6)
    await _assert_completed(store, sample, execution)
    runs = await stage_runs(store, execution)
    # 2.2 is scripted to fail its first verification: one failed round, then success
    verify_22 = [(r["attempt"], r["status"]) for r in runs
                 if r["task_id"] == "2.2" and r["stage"] == "VERIFY"]
    assert verify_22 == [(1, "failed"), (2, "succeeded")]


async def _duplicate_every_dispatch(store, stop: asyncio.Event) -> int:
    """Send every command the relay dispatches a second time, through Redis, like a
    network retry would: the workers must treat the copy as a no-op."""
    broker = get_broker(get_settings())
    seen: set[int] = set()
    while not stop.is_set():
        async with store.transaction() as session:
            rows = (await session.execute(text(
                "SELECT id, actor FROM outbox WHERE dispatched_at IS NOT NULL"))).all()
        for command_id, actor in rows:
            if command_id not in seen:
                seen.add(command_id)
                await asyncio.to_thread(send, broker, command_id=command_id, actor=actor)
        await asyncio.sleep(0.2)
    reset_broker()
    return len(seen)


async def test_every_message_delivered_twice_changes_nothing(store, sample, pipeline_env, procs):
    procs.relay()
    procs.worker(threads=4)
    stop = asyncio.Event()
    duplicator = asyncio.create_task(_duplicate_every_dispatch(store, stop))
    execution = await start(store, PROJECT, sample.url)
    row = await wait_status(store, execution, {"completed", "error", "stopped", "paused"},
                            timeout=600)
    stop.set()
    duplicated = await duplicator
    assert row["status"] == "completed", row
    assert duplicated >= 6 * 8
    await _assert_completed(store, sample, execution)
    runs = await stage_runs(store, execution)
    keys = [(r["task_id"], r["stage"], r["attempt"]) for r in runs]
    assert len(keys) == len(set(keys))
    assert all(r["claims"] == 1 for r in runs)


async def _wait_running(store, execution, stage: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with store.transaction() as session:
            owner = (await session.execute(text(
                "SELECT lease_owner FROM stage_runs WHERE execution_id = :e AND stage = :s "
                "AND status = 'running' AND task_id = '1.2'"),
                {"e": execution, "s": stage})).scalar_one_or_none()
        if owner:
            return str(owner)
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{stage} never ran")


SLOW_TEST = "import time\n\n\ndef test_slowly() -> None:\n    time.sleep(4)\n"


@pytest.fixture
def sample(tmp_path, request):
    """The demo sample; for a kill mid-VERIFY its checks take a few seconds (a slow test),
    so that the kill surely lands inside the stage."""
    files = None
    if getattr(request, "param", None) == "slow-checks":
        files = {**INITIAL, "tests/test_slowly.py": SLOW_TEST}
    return create_sample(tmp_path / "sample", files=files)


@pytest.mark.parametrize(("stage", "sample"), [("IMPLEMENT", "default"),
                                               ("VERIFY", "slow-checks")],
                         indirect=["sample"], ids=["IMPLEMENT", "VERIFY"])
async def test_a_worker_killed_mid_stage_leaves_a_claim_that_expires(
    store, sample, pipeline_env, procs, stage
):
    procs.relay()
    first = procs.worker(threads=4)
    execution = await start(store, PROJECT, sample.url)
    owner = await _wait_running(store, execution, stage)
    assert f":{first.popen.pid}:" in owner
    await asyncio.sleep(1.5)  # well inside the stage (Aider or the checks are running)
    os.killpg(first.popen.pid, signal.SIGKILL)
    procs.worker(threads=4)
    row = await wait_status(store, execution, {"completed", "error", "stopped", "paused"},
                            timeout=600)
    assert row["status"] == "completed", row
    await _assert_completed(store, sample, execution)
    runs = await stage_runs(store, execution)
    killed = [r for r in runs if r["task_id"] == "1.2" and r["stage"] == stage]
    assert [(r["status"], r["claims"]) for r in killed] == [("succeeded", 2)]
