"""Many customers at once, isolated; and what happens when a task keeps failing."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from tests.e2e.checks import containers_of, frames, remote_task_list, stage_runs, working_copy
from tests.e2e.conftest import start, wait_status
from tests.e2e.scripts import ALWAYS_FAILS
from tests.support.settings import use_settings

from devtools.demo.sample import INITIAL, create_sample
from devtools.scripted_model import ScriptedModelServer, parse_script
from pipeline import commands
from pipeline.audit import Principal
from runner.settings import get_settings

SHORT_LIST = """# Calculator — two tasks

Phase 1: Core arithmetic (Dependencies: [])

- 1.1 Add and subtract (Dependencies: [])
  • files: src/calc/basic.py, tests/test_basic.py
  • test.coverage: ≥80%

- 1.2 Multiply and divide (Dependencies: [1.1])
  • files: src/calc/basic.py, tests/test_basic.py
"""
BROKEN_LIST = SHORT_LIST.replace("[1.1])", "[9.9])")


async def test_five_customers_run_at_once_isolated_and_one_failure_stays_local(
    store, tmp_path, pipeline_env, procs
):
    procs.relay()
    procs.worker(threads=4)
    procs.worker(threads=4)
    samples, executions = {}, {}
    for i in range(5):
        listing = BROKEN_LIST if i == 4 else SHORT_LIST
        sample = create_sample(tmp_path / f"c{i}", files={**INITIAL, "tasks_list.md": listing})
        project = f"customer-{i}/calc"
        samples[project] = sample
        executions[project] = await start(store, project, sample.url)
    rows = await asyncio.gather(*(
        wait_status(store, e, {"completed", "error", "stopped", "paused"}, timeout=900)
        for e in executions.values()))
    by_project = dict(zip(executions, rows, strict=True))
    broken = by_project.pop("customer-4/calc")
    assert broken["status"] == "error"
    async with store.transaction() as session:
        error = (await session.execute(text(
            "SELECT classification, message, details FROM errors WHERE execution_id = :e"),
            {"e": executions["customer-4/calc"]})).one()
    assert error[0] == "config"
    line = BROKEN_LIST.splitlines().index(
        "- 1.2 Multiply and divide (Dependencies: [9.9])") + 1
    assert error[2]["problems"] == [
        f"tasks_list.md:{line}: task 1.2 depends on unknown task 9.9"]  # line-numbered
    root = get_settings().path(get_settings().workspace.root).resolve()
    for project, row in by_project.items():
        assert row["status"] == "completed", (project, row)
        assert remote_task_list(samples[project]).progress() == (2, 2)
        runs = await stage_runs(store, executions[project])
        for run in runs:
            if run["stage"] == "PREP":
                # the working copy is the execution's own, and its host path is not shown
                assert run["result"]["repoPath"] == "<working copy>"
                assert run["result"]["container"].count(
                    str(executions[project])[:8]) == 1  # its own container
        assert containers_of(executions[project]) == []
        assert not working_copy(project, executions[project]).exists()  # and removed
    # each customer's copies lived under its own root, and nothing of theirs is left there
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("customer-")) == [
        f"customer-{i}" for i in range(5)]


async def test_executions_of_a_customer_at_its_slot_limit_take_turns_and_all_complete(
    store, tmp_path, pipeline_env, procs, monkeypatch
):
    # Given a customer allowed one container at a time, and two of its projects started at
    # once, whose tasks each need a second container before VERIFY (the baseline's, as
    # every task with a test criterion does in SETUP)
    use_settings(pipeline_env, monkeypatch, {"DEVTEAM_SANDBOX_MAX_CONTAINERS_PER_CUSTOMER": "1"})
    procs.relay()
    procs.worker(threads=4)
    samples = {f"solo/calc-{i}": create_sample(tmp_path / f"s{i}", files={
        **INITIAL, "tasks_list.md": SHORT_LIST}) for i in range(2)}
    executions = {project: await start(store, project, sample.url)
                  for project, sample in samples.items()}
    # Then both complete: no execution held its container's slot while it waited for
    # another (each waited for the other, and both for themselves, before)
    rows = await asyncio.gather(*(
        wait_status(store, e, {"completed", "error", "stopped", "paused"}, timeout=600)
        for e in executions.values()))
    for (project, execution), row in zip(executions.items(), rows, strict=True):
        assert row["status"] == "completed", (project, row)
        assert remote_task_list(samples[project]).progress() == (2, 2)
        runs = await stage_runs(store, execution)
        assert [r["status"] for r in runs if r["stage"] == "SETUP"] == ["succeeded"] * 2
        assert any(r["result"].get("baseline") for r in runs if r["stage"] == "SETUP")
        assert containers_of(execution) == []


@pytest.mark.timeout(1800)
async def test_a_task_that_keeps_failing_gets_retries_then_resolution_then_human_review(
    store, tmp_path, pipeline_env, procs
):
    sample = create_sample(tmp_path / "failing",
                           files={**INITIAL, "tasks_list.md": SHORT_LIST}, script=ALWAYS_FAILS)
    with ScriptedModelServer(parse_script(ALWAYS_FAILS)) as model:
        procs.env["DEVTEAM_MODEL_API_BASE"] = model.url
        procs.relay()
        procs.worker(threads=4)
        execution = await start(store, "acme/failing", sample.url)
        row = await wait_status(store, execution, {"paused", "completed", "error", "stopped"},
                                timeout=900)
        assert (row["status"], row["pause_reason"]) == ("paused", "human_review"), row
        runs = await stage_runs(store, execution)
        # 1.1: three IMPLEMENT→VERIFY rounds (the first and two retries), none succeeded
        # (each round's mistake differs a little, so each one reaches VERIFY and fails there)
        implement = [r["attempt"] for r in runs
                     if r["task_id"] == "1.1" and r["stage"] == "IMPLEMENT"]
        assert implement == [1, 2, 3]
        assert [r["status"] for r in runs
                if r["task_id"] == "1.1" and r["stage"] == "VERIFY"] == ["failed"] * 3
        async with store.transaction() as session:
            injected = (await session.execute(text(
                "SELECT task_id, task->>'title', source_error_id, origin_task_id, status "
                "FROM injected_tasks WHERE project_id = 'acme/failing' ORDER BY id"))).all()
            errors = (await session.execute(text(
                "SELECT id, task_id, classification, message FROM errors WHERE execution_id = :e "
                "ORDER BY created_at"), {"e": execution})).all()
        # then three error-resolution tasks, each titled after the error it resolves
        assert len(injected) == 3
        for task_id, title, source_error, origin, status in injected:
            assert task_id.startswith("fix-1.1-") and origin == "1.1"
            assert title == f"Resolve error: {source_error}"
            assert status == "failed"  # each failed in turn and was retired
        assert {e[0] for e in errors} >= {i[2] for i in injected}
        assert len(errors) == 4 and errors[0][2] == "verification"
        assert row["error_id"] == errors[-1][0]
        error_frames = [f for f in await frames(store, execution) if f["type"] == "error"]
        assert len(error_frames) == 4
        # the task is not marked done, and nothing was merged
        assert remote_task_list(sample).progress() == (0, 2)
        # a person resumes after review: resolution may start again from zero
        await commands.resume(store, principal=Principal(user_id="tester", correlation_id="r"),
                              project_id="acme/failing")
        async with store.transaction() as session:
            statuses = (await session.execute(text(
                "SELECT DISTINCT status FROM injected_tasks WHERE project_id = 'acme/failing'"
            ))).scalars().all()
        assert set(statuses) == {"reviewed"}
        await commands.stop(store, principal=Principal(user_id="tester", correlation_id="s"),
                            project_id="acme/failing")
        row = await wait_status(store, execution, {"stopped", "error", "completed"}, timeout=120)
        assert row["status"] == "stopped"
        assert containers_of(execution) == []


async def test_a_new_execution_after_a_stop_gets_a_fresh_resolution_budget_and_counts_only_real_progress(  # noqa: E501
    store, tmp_path, pipeline_env, procs
):
    sample = create_sample(tmp_path / "again",
                           files={**INITIAL, "tasks_list.md": SHORT_LIST}, script=ALWAYS_FAILS)
    person = Principal(user_id="tester", correlation_id="again")
    ended = {"paused", "completed", "error", "stopped"}
    with ScriptedModelServer(parse_script(ALWAYS_FAILS)) as model:
        procs.env.update({"DEVTEAM_MODEL_API_BASE": model.url,
                          "DEVTEAM_PIPELINE_VERIFY_ROUNDS": "1",
                          "DEVTEAM_PIPELINE_MAX_RESOLUTION_TASKS": "1"})
        procs.relay()
        procs.worker(threads=4)
        first = await start(store, "acme/again", sample.url)
        row = await wait_status(store, first, ended, timeout=600)
        assert (row["status"], row["pause_reason"]) == ("paused", "human_review"), row
        await commands.stop(store, principal=person, project_id="acme/again")
        await wait_status(store, first, {"stopped"}, timeout=120)
        second = await start(store, "acme/again", sample.url)
        row = await wait_status(store, second, ended, timeout=600)

    assert (row["status"], row["pause_reason"]) == ("paused", "human_review"), row
    runs = await stage_runs(store, second)
    # the new execution tried 1.1 and then its own error-resolution task: the one the
    # stopped execution spent does not use up this one's budget
    assert [r["attempt"] for r in runs
            if r["task_id"] == "1.1" and r["stage"] == "IMPLEMENT"] == [1]
    fixes = {r["task_id"] for r in runs
             if r["task_id"].startswith("fix-1.1-") and r["stage"] == "IMPLEMENT"}
    assert len(fixes) == 1
    # nothing was done, so nothing counts as done: failed fix tasks are no progress
    assert row["completed_tasks"] == 0, row
    assert remote_task_list(sample).progress() == (0, 2)
    assert containers_of(second) == []
