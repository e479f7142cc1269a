"""Hostile repositories cannot exhaust the service: each attack reproduced through the real
pipeline (Postgres, Redis, git, Docker and Aider where it needs them).

What a person would check is what each test asserts: the execution's status and its one
error record (classification ``config``, the limit named, never retried), the remote
untouched (nothing merged or pushed), no working copy left, and no host path in anything a
tenant reads (error records, stage results, the stream).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from tests.e2e.checks import containers_of, main_commits, stage_runs, working_copy
from tests.e2e.conftest import start, wait_status
from tests.support.hostile_repos import Deep, Gitlink, Link, bare_repository, compressible, refs

from devtools.demo.sample import INITIAL, create_sample, model_script
from devtools.scripted_model import ScriptedModelServer, parse_script
from runner.removal import remove_tree
from runner.sandbox import Reaper
from runner.sandbox import labels as lbl
from runner.settings import PROJECT_ROOT, get_settings

pytestmark = [pytest.mark.slow]

ENDED = {"paused", "completed", "error", "stopped"}
ONE_TASK = """# Hostile

Phase 1: Core (Dependencies: [])

- 1.1 Add and subtract (Dependencies: [])
  • files: src/calc/basic.py, tests/test_basic.py
"""
GITMODULES = (
    '[submodule "evil"]\n\tpath = evil\n\turl = https://example.invalid/evil.git\n'
    "\tupdate = !touch {marker}\n"
)
FILES_LIMIT = 500


def url(path: Path) -> str:
    return f"file://{path}"


def host_dirs() -> list[str]:
    settings = get_settings()
    root = settings.path(settings.workspace.root)
    return sorted({str(root), str(root.resolve()), str(PROJECT_ROOT)})


async def tenant_view(store, execution: uuid.UUID) -> dict[str, str]:
    """Everything a tenant can read of an execution, as text: error records, stage results
    and errors, the stream, the event's task context."""
    async with store.transaction() as session:
        errors = (await session.execute(text(
            "SELECT stage, classification, message, details FROM errors "
            "WHERE execution_id = :e ORDER BY created_at"), {"e": execution})).all()
        frames = (await session.execute(text(
            "SELECT payload FROM notifications WHERE execution_id = :e ORDER BY seq"),
            {"e": execution})).scalars().all()
        context = (await session.execute(text(
            "SELECT ev.task_context FROM events ev JOIN executions ex ON ex.event_id = ev.id "
            "WHERE ex.id = :e"), {"e": execution})).scalar_one_or_none()
    runs = await stage_runs(store, execution)
    return {
        "errors": json.dumps([list(map(str, e[:3])) + [e[3]] for e in errors]),
        "stage_runs": json.dumps([[r["result"], r["error"]] for r in runs], default=str),
        "notifications": json.dumps(list(frames)),
        "task_context": json.dumps(context),
    }


async def ended(store, execution: uuid.UUID, timeout: float = 600) -> dict:
    """The execution's row once it has ended and FINALIZE has run (the status is recorded
    a moment before FINALIZE removes the working copy)."""
    row = await wait_status(store, execution, ENDED, timeout)
    deadline = time.monotonic() + timeout
    while not [r for r in await stage_runs(store, execution)
               if r["stage"] == "FINALIZE" and r["status"] in ("succeeded", "failed")]:
        assert time.monotonic() < deadline, "FINALIZE never finished"
        await asyncio.sleep(0.5)
    return row


async def the_error(store, execution: uuid.UUID) -> dict:
    async with store.transaction() as session:
        rows = (await session.execute(text(
            "SELECT stage, classification, message, details FROM errors "
            "WHERE execution_id = :e"), {"e": execution})).mappings().all()
    assert len(rows) == 1, rows
    return dict(rows[0])


async def assert_refused_once(store, execution: uuid.UUID, stage: str, *needles: str) -> None:
    """A config error at ``stage`` naming ``needles``, tried once, the execution ended."""
    error = await the_error(store, execution)
    assert (error["stage"], error["classification"]) == (stage, "config"), error
    for needle in needles:
        assert needle in error["message"], (needle, error["message"])
    runs = await stage_runs(store, execution)
    tried = [(r["stage"], r["attempt"], r["status"], r["claims"]) for r in runs
             if r["stage"] == stage]
    assert tried == [(stage, 1, "failed", 1)], tried  # not retried as infrastructure
    assert [r["status"] for r in runs if r["stage"] == "FINALIZE"] == ["succeeded"]


async def assert_no_host_path(store, execution: uuid.UUID) -> None:
    view = await tenant_view(store, execution)
    for where, haystack in view.items():
        for directory in host_dirs():
            assert directory not in haystack, (where, directory)


async def test_given_hostile_repositories_then_checkout_and_init_refuse_them_as_config(
    store, tmp_path, attack_env, procs
):
    repos = tmp_path / "remotes"
    marker = tmp_path / "pwned-by-gitmodules"
    hostile = {
        # 10 files of 20 MB of zeros: a few hundred kilobytes packed, 200 MB checked out
        "evil/expand": bare_repository(repos / "expand.git", {
            "tasks_list.md": ONE_TASK, **compressible(10, 20 * 1024 * 1024)}),
        "evil/many": bare_repository(repos / "many.git", {
            "tasks_list.md": ONE_TASK,
            **{f"gen/{i:04d}.txt": f"{i}\n" for i in range(FILES_LIMIT + 50)}}),
        "evil/deep": bare_repository(repos / "deep.git", {
            "tasks_list.md": ONE_TASK, "deep": Deep(1200)}),
        "evil/submodule": bare_repository(repos / "submodule.git", {
            "tasks_list.md": ONE_TASK, ".gitmodules": GITMODULES.format(marker=marker),
            "evil": Gitlink()}),
        "evil/outcomes": bare_repository(repos / "outcomes.git", {
            "tasks_list.md": ONE_TASK, "task_outcomes.md": Link(".git/config")}),
    }
    before = {project: refs(path) for project, path in hostile.items()}
    with ScriptedModelServer(parse_script(model_script())) as model:
        attack_env(model.url, DEVTEAM_LIMITS_REPO_FILES=str(FILES_LIMIT))
        procs.relay()
        procs.worker(threads=4)
        started = {project: await start(store, project, url(path))
                   for project, path in hostile.items()}
        rows = await asyncio.gather(*(ended(store, e) for e in started.values()))
        asked = len(model.requests)

    for (project, execution), row in zip(started.items(), rows, strict=True):
        assert row["status"] == "error", (project, row)
        assert refs(hostile[project]) == before[project], project  # nothing pushed
        assert not working_copy(project, execution).exists(), project
        await assert_no_host_path(store, execution)
    await assert_refused_once(store, started["evil/expand"], "INIT",
                              "more than 134,217,728 bytes in its files",
                              "DEVTEAM_LIMITS_REPO_BYTES=134217728")
    await assert_refused_once(store, started["evil/many"], "INIT",
                              f"more than {FILES_LIMIT} files and directories",
                              f"DEVTEAM_LIMITS_REPO_FILES={FILES_LIMIT}")
    await assert_refused_once(store, started["evil/deep"], "INIT",
                              "nested more than 64 levels deep (deep/d/d/",
                              "DEVTEAM_LIMITS_REPO_DEPTH=64")
    await assert_refused_once(store, started["evil/submodule"], "INIT",
                              "invalid value for submodule 'update' property")
    assert not marker.exists()  # libgit2 never runs a submodule's command
    await assert_refused_once(store, started["evil/outcomes"], "INIT",
                              "refusing to write task_outcomes.md: task_outcomes.md is a "
                              "symbolic link")
    assert asked == 0  # no model call for any of them
    # no half-made clone anywhere under the workspace root
    root = get_settings().path(get_settings().workspace.root)
    assert sorted(p.name for p in root.glob("evil/work/*/*")) == []


async def test_given_a_1200_deep_tree_the_operator_allows_then_finalize_removes_the_copy(
    store, tmp_path, attack_env, procs
):
    # with the depth limit raised by the operator the copy is made, then libgit2 itself
    # refuses to fetch into it (it walks trees 100 levels deep at most): once infrastructure,
    # retried, and FINALIZE's removal crashed with RecursionError and left the copy behind
    path = bare_repository(tmp_path / "remotes" / "deep.git", {
        "tasks_list.md": ONE_TASK, "deep": Deep(1200)})
    with ScriptedModelServer(parse_script(model_script())) as model:
        attack_env(model.url, DEVTEAM_LIMITS_REPO_DEPTH="2000")
        procs.relay()
        procs.worker(threads=2)
        execution = await start(store, "evil/deeper", url(path))
        row = await ended(store, execution)

    assert row["status"] == "error", row
    error = await the_error(store, execution)
    assert "directory nesting too deep" in error["message"]
    await assert_refused_once(store, execution, "INIT")
    assert not working_copy("evil/deeper", execution).exists()
    logged = (await tenant_view(store, execution))["notifications"]
    assert "not removed now" not in logged
    assert "removed 0 container(s) and the working copy" in logged
    await assert_no_host_path(store, execution)


def _chattr(flag: str, path: Path) -> bool:
    done = subprocess.run(["chattr", flag, str(path)], check=False, capture_output=True)
    return done.returncode == 0


@pytest.mark.docker
def test_given_left_behind_copies_one_of_which_cannot_be_removed_then_the_reaper_removes_the_rest(
    docker_client, tmp_path
):
    root = tmp_path / "workspaces"
    work = root / "evil" / "work" / "p"
    deep, stuck, plain = (work / name for name in ("dead-deep", "dead-stuck", "dead-plain"))
    for copy in (deep, stuck, plain):
        (copy / "src").mkdir(parents=True)
        (copy / "src" / "app.py").write_text("x = 1\n")
    fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1200):  # the tree that made shutil.rmtree raise RecursionError
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)
    locked = stuck / "src" / "locked.txt"
    locked.write_text("immutable")
    if not _chattr("+i", locked):
        pytest.skip("chattr +i is needed to make an entry not even root can remove")
    try:
        reaper = Reaper(
            docker_client,
            live_executions=set,
            workspace_root=root,
            max_age_hours=24,
            grace_seconds=0,
            scope={lbl.DEPLOYMENT: f"reaper-test-{uuid.uuid4().hex}"},  # no container is ours
            now=lambda: time.time() + 48 * 3600,
        )
        report = reaper.run_once()
    finally:
        _chattr("-i", locked)

    assert sorted(Path(p).name for p in report.workspaces) == ["dead-deep", "dead-plain"]
    assert not deep.exists() and not plain.exists()
    [problem] = report.errors
    assert problem.endswith("src/locked.txt: Operation not permitted"), problem
    assert sorted(p.relative_to(stuck).as_posix() for p in stuck.rglob("*")) == [
        "src", "src/locked.txt"]
    assert remove_tree(stuck) == []  # once the entry can go, the next pass takes the rest


SLOW_TEST = "import time\n\n\ndef test_waits_a_day() -> None:\n    time.sleep(86_400)\n"
NESTED_REPORT = (
    "import pathlib\n\n"
    "def test_writes_a_report() -> None:\n"
    "    pathlib.Path('report.json').write_text('[' * 100_000 + ']' * 100_000)\n"
)


BIG_TASK = """# Big data

Phase 1: Core (Dependencies: [])

- 7.1 Use the table (Dependencies: [])
  • files: data/table.txt, src/calc/basic.py
"""
BIG_LINE = "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28\n"
BIG_TABLE = BIG_LINE * (64 * 1024 * 1024 // len(BIG_LINE) + 1)
"""64 MB: named in a task, it had taken the host-side Aider to 2.3 GB RSS."""


@pytest.mark.docker
async def test_given_a_day_long_timeout_a_nested_coverage_report_and_a_64_mb_task_file_then_each_is_bounded(  # noqa: E501
    store, tmp_path, attack_env, procs, runner_image
):
    # .devteam.toml asks for a day per command; the operator allows 30 s. The base passes
    # quickly; the model's change adds a test that sleeps for a day.
    slow_toml = INITIAL[".devteam.toml"] + "\n[limits]\ntimeout_seconds = 86400\n"
    slow_edits = {"1.1": {"tests/test_slow.py": SLOW_TEST}}
    slow = create_sample(tmp_path / "slow", script=model_script(slow_edits, {}),
                         files={**INITIAL, "tasks_list.md": ONE_TASK, ".devteam.toml": slow_toml})
    # the project's own tests write a coverage report nested 100,000 levels deep
    nested_toml = ('[commands]\ntest = "python3 -m pytest -q -p no:cacheprovider"\n'
                   '[reports]\ncoverage = "report.json"\n[criteria]\n"test.coverage" = ">=80%"\n')
    nested = create_sample(tmp_path / "nested", script=model_script(slow_edits, {}), files={
        **INITIAL, "tasks_list.md": ONE_TASK, ".devteam.toml": nested_toml,
        "tests/test_report.py": NESTED_REPORT})
    # a task names a 64 MB file (it packs small, so the checkout limits let it through)
    big = create_sample(tmp_path / "big", script=model_script(slow_edits, {}), files={
        **INITIAL, "tasks_list.md": BIG_TASK, "data/table.txt": BIG_TABLE})
    slow_before = [c.id for c in main_commits(slow)]
    nested_before = [c.id for c in main_commits(nested)]
    big_before = [c.id for c in main_commits(big)]
    script = model_script(slow_edits, {})
    with ScriptedModelServer(parse_script(script)) as model:
        attack_env(model.url, DEVTEAM_SANDBOX_COMMAND_TIMEOUT_SECONDS="30")
        procs.relay()
        procs.worker(threads=4)
        by_slow = await start(store, "evil/slow", slow.url)
        by_nested = await start(store, "evil/nested", nested.url)
        by_big = await start(store, "evil/big", big.url)
        slow_row, nested_row, big_row = await asyncio.gather(
            wait_status(store, by_slow, ENDED, 600), ended(store, by_nested),
            ended(store, by_big))
        asked_for_big = [r for r in model.requests if r.task_id == "7.1"]

    # the day-long test was stopped at the operator's 30 s, and the round failed on it
    assert (slow_row["status"], slow_row["pause_reason"]) == ("paused", "human_review"), (
        slow_row, await tenant_view(store, by_slow))
    verify = [r for r in await stage_runs(store, by_slow) if r["stage"] == "VERIFY"]
    assert [r["status"] for r in verify] == ["failed"]
    [test_run] = [c for c in verify[0]["result"]["commands"] if "pytest" in c["command"]]
    assert test_run["timedOut"] is True
    assert test_run["duration"] < 86_400
    assert [c.id for c in main_commits(slow)] == slow_before  # nothing merged or pushed
    assert containers_of(by_slow) == []  # no container slot held while a person looks
    # the nested report is config, once, before any model call, and nothing was merged
    assert nested_row["status"] == "error", (nested_row, await tenant_view(store, by_nested))
    error = await the_error(store, by_nested)
    assert error["classification"] == "config", error
    assert "nested too deeply" in error["message"]
    runs = await stage_runs(store, by_nested)
    failed = [r for r in runs if r["status"] in ("failed", "retrying")]
    assert [(r["stage"], r["claims"]) for r in failed] == [(error["stage"], 1)], failed
    assert not [r for r in runs if r["stage"] == "IMPLEMENT"]
    assert [c.id for c in main_commits(nested)] == nested_before
    assert containers_of(by_nested) == []
    assert not working_copy("evil/nested", by_nested).exists()
    # the 64 MB task file is config at IMPLEMENT, before Aider starts: the model never saw it
    assert big_row["status"] == "error", (big_row, await tenant_view(store, by_big))
    await assert_refused_once(store, by_big, "IMPLEMENT",
                              "larger than 1,048,576 bytes are not given to the model",
                              "DEVTEAM_LIMITS_MODEL_FILE_BYTES",
                              f"data/table.txt ({len(BIG_TABLE):,} bytes)")
    assert asked_for_big == []
    assert [c.id for c in main_commits(big)] == big_before
    assert containers_of(by_big) == []
    assert not working_copy("evil/big", by_big).exists()
    for execution in (by_slow, by_nested, by_big):
        await assert_no_host_path(store, execution)
