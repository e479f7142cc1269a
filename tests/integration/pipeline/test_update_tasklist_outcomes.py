"""UPDATE_TASKLIST with a customer's ``task_outcomes.md`` that is not UTF-8, or too large,
run by the engine on the real database and the sample project's bare remote.

The bug it reproduces: a bare ``.decode()`` of the outcomes file raised
UnicodeDecodeError, recorded as "internal error in UPDATE_TASKLIST" (infrastructure) and
retried; the merge was already pushed, the task never marked done, so it ran again.
"""

from __future__ import annotations

import uuid

import pygit2
import pytest
from sqlalchemy import text

from devtools.demo.sample import AUTHOR, Sample, create_sample
from pipeline import commands
from pipeline.audit import Principal
from pipeline.engine import Engine
from pipeline.lifecycle import Stage
from pipeline.outcome import Outcome, StageContext
from pipeline.services import Services
from pipeline.stages import integrate, start, tasklist_io
from runner.settings import get_settings

ALICE = Principal(user_id="alice", correlation_id="corr-outcomes-1")
LATIN1 = b"# Ergebnisse\n\nAufgabe 0.1 erledigt \xe0 Z\xfcrich \xff\n"


def add_remote_file(sample: Sample, path: str, data: bytes) -> None:
    """A customer's commit on ``main`` adding the top-level file ``path``."""
    repo = pygit2.Repository(str(sample.remote))
    tip = repo.references["refs/heads/main"].peel(pygit2.Commit)
    builder = repo.TreeBuilder(tip.tree)
    builder.insert(path, repo.create_blob(data), pygit2.GIT_FILEMODE_BLOB)
    repo.create_commit("refs/heads/main", AUTHOR, AUTHOR, f"Add {path}", builder.write(),
                       [tip.id])


def remote_bytes(sample: Sample, path: str) -> bytes:
    repo = pygit2.Repository(str(sample.remote))
    tip = repo.references["refs/heads/main"].peel(pygit2.Commit)
    return bytes(repo[tip.tree[path].id].data)


async def prep_stand_in(ctx: StageContext) -> Outcome:
    """PREP, IMPLEMENT, VERIFY, MERGE and PUSH left out: straight to UPDATE_TASKLIST."""
    return Outcome(
        result={"taskId": ctx.task_id, "branch": "task/1-1", "baseCommit": "a" * 40,
                "repoPath": "/w", "container": "c",
                "artifacts": {"cloned": True, "branchCreated": True}},
        next=ctx.then(Stage.UPDATE_TASKLIST),
    )


async def queued(store, execution_id: uuid.UUID) -> list[tuple[int, str]]:
    async with store.transaction() as session:
        rows = (await session.execute(text(
            "SELECT id, payload->>'stage' FROM outbox WHERE execution_id = :e "
            "AND completed_at IS NULL ORDER BY id"), {"e": execution_id})).all()
    return [(int(r[0]), str(r[1])) for r in rows]


async def run_to_update_tasklist(store, sample: Sample, *, before_update=None
                                 ) -> tuple[str, dict]:
    """INIT, SELECT, the stand-in PREP, then UPDATE_TASKLIST: what the last one did and
    its stage run. ``before_update()`` runs just before UPDATE_TASKLIST."""
    started = await commands.start_execution(
        store, principal=ALICE, project_id="acme/outcomes", repository_url=sample.url)
    engine = Engine(Services(get_settings(), store), {
        Stage.INIT: start.init, Stage.SELECT: start.select, Stage.PREP: prep_stand_in,
        Stage.UPDATE_TASKLIST: integrate.update_tasklist})
    command_id = started.command_id
    for stage in (Stage.INIT, Stage.SELECT, Stage.PREP):
        assert await engine.run(command_id) == "succeeded", stage
        [(command_id, _)] = await queued(store, started.execution_id)
    if before_update is not None:
        before_update()
    what = await engine.run(command_id)
    return what, await stage_run(store, started.execution_id, Stage.UPDATE_TASKLIST)


async def stage_run(store, execution_id: uuid.UUID, stage: Stage) -> dict:
    async with store.transaction() as session:
        run = (await session.execute(text(
            "SELECT status, error FROM stage_runs WHERE execution_id = :e AND stage = :s"),
            {"e": execution_id, "s": stage.value})).mappings().one()
    return dict(run)


async def test_a_non_utf8_outcomes_file_is_kept_and_the_task_is_marked_done(
    store, tmp_path
) -> None:
    sample = create_sample(tmp_path / "sample")
    add_remote_file(sample, "task_outcomes.md", LATIN1)

    what, run = await run_to_update_tasklist(store, sample)

    assert what == "succeeded", run
    outcomes = remote_bytes(sample, "task_outcomes.md")
    assert outcomes.startswith(LATIN1)
    assert b"## 1.1 Add and subtract" in outcomes[len(LATIN1):]
    assert "- [x] 1.1 Add and subtract" in remote_bytes(sample, "tasks_list.md").decode()


async def test_an_outcomes_file_over_the_limit_is_refused_at_init_before_any_task(
    store, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a repository whose outcomes file is over the limit
    sample = create_sample(tmp_path / "sample")
    add_remote_file(sample, "task_outcomes.md", b"# Task outcomes\n" + b"x" * 200)
    monkeypatch.setattr(tasklist_io, "MAX_OUTCOMES_BYTES", 100)
    started = await commands.start_execution(
        store, principal=ALICE, project_id="acme/outcomes", repository_url=sample.url)
    engine = Engine(Services(get_settings(), store), {Stage.INIT: start.init})

    # Then INIT refuses it, naming the file and what to do, and no task is selected
    assert await engine.run(started.command_id) == "failed"
    run = await stage_run(store, started.execution_id, Stage.INIT)
    assert run["error"]["classification"] == "config"
    assert "task_outcomes.md is larger than 100 bytes" in run["error"]["message"]
    assert "trim it by hand" in run["error"]["message"]
    assert [stage for _, stage in await queued(store, started.execution_id)] == ["FINALIZE"]


async def test_an_outcomes_file_over_the_limit_when_the_task_is_recorded_is_a_config_error(
    store, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UPDATE_TASKLIST checks the limit itself too (a file within it at INIT is over it
    when the task is recorded: here the limit is lowered in between)."""
    sample = create_sample(tmp_path / "sample")
    add_remote_file(sample, "task_outcomes.md", b"# Task outcomes\n" + b"x" * 200)

    what, run = await run_to_update_tasklist(store, sample, before_update=lambda: (
        monkeypatch.setattr(tasklist_io, "MAX_OUTCOMES_BYTES", 100)))

    assert what == "failed"
    assert run["error"]["classification"] == "config"
    assert "task_outcomes.md is larger than 100 bytes" in run["error"]["message"]
