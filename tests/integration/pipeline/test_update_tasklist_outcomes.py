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
from pipeline.stages import integrate, start
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


async def run_to_update_tasklist(store, sample: Sample) -> tuple[str, dict]:
    """INIT, SELECT, the stand-in PREP, then UPDATE_TASKLIST: what the last one did and
    its stage run."""
    started = await commands.start_execution(
        store, principal=ALICE, project_id="acme/outcomes", repository_url=sample.url)
    engine = Engine(Services(get_settings(), store), {
        Stage.INIT: start.init, Stage.SELECT: start.select, Stage.PREP: prep_stand_in,
        Stage.UPDATE_TASKLIST: integrate.update_tasklist})
    command_id = started.command_id
    for stage in (Stage.INIT, Stage.SELECT, Stage.PREP):
        assert await engine.run(command_id) == "succeeded", stage
        [(command_id, _)] = await queued(store, started.execution_id)
    what = await engine.run(command_id)
    async with store.transaction() as session:
        run = (await session.execute(text(
            "SELECT status, error FROM stage_runs WHERE execution_id = :e AND stage = :s"),
            {"e": started.execution_id, "s": Stage.UPDATE_TASKLIST.value})).mappings().one()
    return what, dict(run)


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


async def test_an_outcomes_file_over_the_limit_is_a_config_error_naming_it(
    store, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = create_sample(tmp_path / "sample")
    add_remote_file(sample, "task_outcomes.md", b"# Task outcomes\n" + b"x" * 200)
    monkeypatch.setattr(integrate, "MAX_OUTCOMES_BYTES", 100)

    what, run = await run_to_update_tasklist(store, sample)

    assert what == "failed"
    assert run["error"]["classification"] == "config"
    assert "task_outcomes.md is larger than 100 bytes" in run["error"]["message"]
