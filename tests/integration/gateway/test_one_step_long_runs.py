"""The one-step API while its operation runs for long: the ``Idempotency-Key`` claim stays
locked (renewed) so a retry answers 409 until the first finishes, then its stored answer;
no database transaction is open while Aider runs; two users of a project's manual working
copy take turns on its lock file. Real Postgres, a real gateway process, real Aider against
the scripted model (made slow to answer, so the tool run outlasts the claim's first lock)."""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import msgspec
import pygit2
import pytest
from tests.integration.gateway.conftest import PROJECT, audit, rows
from tests.support.procs import Proc

from devtools.demo.sample import Sample
from devtools.scripted_model import ScriptedModelServer, load_script
from pipeline import projects
from runner.git.paths import workspace_paths
from runner.settings import get_settings

BRANCH = "task/1-1-add-and-subtract"
IMPLEMENT = {"projectId": PROJECT, "taskId": "1.1", "branch": BRANCH, "tool": "aider"}
SHORT_LOCK = timedelta(seconds=3)
MODEL_DELAY = 15.0
"""How long the model takes to answer task 1.1: well past SHORT_LOCK, so the tool run
outlasts the claim's first lock."""


@pytest.fixture
def slow_model(sample: Sample) -> Iterator[ScriptedModelServer]:
    script = load_script(sample.script)
    task = msgspec.structs.replace(script.tasks["1.1"], delay_seconds=MODEL_DELAY)
    slow = msgspec.structs.replace(script, tasks={**script.tasks, "1.1": task})
    with ScriptedModelServer(slow) as server:
        yield server


@pytest.fixture
def gateway(procs, slow_model: ScriptedModelServer, project: str) -> Proc:
    """A real gateway process (requests run side by side, as they do in production) with
    Aider pointed at the slow model and a claim lock of SHORT_LOCK."""
    proc: Proc = procs.gateway(
        DEVTEAM_MODEL_API_BASE=slow_model.url,
        DEVTEAM_GATEWAY_IDEMPOTENCY_LOCK_SECONDS=str(SHORT_LOCK.total_seconds()),
    )
    return proc


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def _until_asked(model: ScriptedModelServer, task_id: str) -> None:
    """Until Aider has sent its request for ``task_id`` (the tool is running)."""
    for _ in range(2400):
        if any(r.task_id == task_id for r in model.model.requests):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the coding tool never asked the model about {task_id}")


async def _until_first_lock_over(store: Any, key: str, lock: timedelta) -> None:
    """Until the claim of ``key`` is older than its first lock (``created_at + lock``)."""
    for _ in range(2400):
        found = await rows(store, "SELECT now() > created_at + :lock AS over "
                           "FROM idempotency_keys WHERE key = :k", k=key, lock=lock)
        if found and found[0]["over"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the claim of {key} never outlived its first lock")


@pytest.mark.slow
async def test_a_retry_while_implement_runs_past_the_lock_is_409_then_its_answer(
    gateway, slow_model, alice, store
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=300) as http:
        # Given the task's branch, and a claim lock (SHORT_LOCK) much shorter than the run
        prep = await http.post("/prep", json={"projectId": PROJECT, "taskId": "1.1"},
                               headers=alice)
        assert prep.status_code == 200, prep.text
        headers = keyed(alice, "implement-1")
        first = asyncio.create_task(http.post("/implement", json=IMPLEMENT, headers=headers))
        await _until_asked(slow_model, "1.1")
        # When the same request comes again after the claim's first lock is over, while
        # Aider still waits on the model
        await _until_first_lock_over(store, "implement-1", SHORT_LOCK)
        duplicate = await http.post("/implement", json=IMPLEMENT, headers=headers)
        running = not first.done()
        done = await first
        asked = len(slow_model.model.requests)
        replay = await http.post("/implement", json=IMPLEMENT, headers=headers)
    # Then the retry was refused as in flight (not run a second time) ...
    assert duplicate.status_code == 409, duplicate.text
    assert duplicate.json()["type"].endswith("idempotency-in-flight")
    assert running, "the first request ended before its retry was answered"
    # ... the first finished, and a retry after it gets its stored answer
    assert done.status_code == 200, done.text
    assert done.json()["success"] is True, done.json()
    assert replay.status_code == 200
    assert replay.content == done.content
    assert replay.headers["idempotent-replayed"] == "true"
    # ... and the operation ran once: one audited run, no model call after it
    assert len(await audit(store, "task.implement")) == 1
    assert len(slow_model.model.requests) == asked
    repo = pygit2.Repository(prep.json()["repoPath"])
    tip = repo.references[f"refs/heads/{BRANCH}"].peel(pygit2.Commit)
    assert tip.parents[0].id == repo.references["refs/heads/main"].target


@pytest.mark.slow
async def test_no_transaction_is_open_while_aider_runs(gateway, slow_model, alice, store) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=300) as http:
        # Given the task's branch
        prep = await http.post("/prep", json={"projectId": PROJECT, "taskId": "1.1"},
                               headers=alice)
        assert prep.status_code == 200, prep.text
        # When /implement runs Aider, which waits on the (slow) model
        running = asyncio.create_task(
            http.post("/implement", json=IMPLEMENT, headers=keyed(alice, "implement-2")))
        await _until_asked(slow_model, "1.1")
        open_transactions = await rows(
            store,
            "SELECT pid, state, query FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'",
        )
        advisory = await rows(store, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND "
                              "database = (SELECT oid FROM pg_database "
                              "WHERE datname = current_database())")
        still_running = not running.done()
        done = await running
    # Then no session of the database sat in a transaction (nor held a lock) meanwhile
    assert still_running, "the tool run ended before the database was looked at"
    assert open_transactions == []
    assert advisory == []
    assert done.status_code == 200, done.text
    assert done.json()["success"] is True


async def test_a_second_user_of_the_manual_copy_waits_for_the_first(
    procs, project, alice
) -> None:
    # Given the project's manual copy locked by another holder (another gateway process)
    gateway = procs.gateway()
    settings = get_settings()
    worktree = workspace_paths(settings.path(settings.workspace.root), "acme", PROJECT,
                               projects.MANUAL).worktree
    lock = worktree.with_name(f"{projects.MANUAL}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=300) as http:
        with lock.open("a+b") as held:
            fcntl.flock(held.fileno(), fcntl.LOCK_EX)
            # When a /prep comes for the project
            prep = asyncio.create_task(http.post(
                "/prep", json={"projectId": PROJECT, "taskId": "1.1"}, headers=alice))
            await _until_logged(gateway, "projects.copy_busy")
            # Then it waits on the lock without touching the copy ...
            touched = worktree.exists()
            waiting = not prep.done()
            fcntl.flock(held.fileno(), fcntl.LOCK_UN)
        r = await prep
    # ... and goes on once the lock is released
    assert waiting and touched is False
    assert r.status_code == 200, r.text
    assert r.json()["artifacts"]["cloned"] is True
    assert worktree.is_dir()


async def _until_logged(proc: Proc, event: str) -> None:
    for _ in range(2400):
        if any(line.get("msg") == event for line in proc.json_lines()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{proc.name} never logged {event}")
