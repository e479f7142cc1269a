"""``devteam run`` as a user runs it: a subprocess on their own repository, with the real
relay, worker, Aider, git and Docker it starts itself, and only the model scripted.

Each test has its own database, Redis db and workspace root (the ``env`` fixture); the
``file://`` allowance the ``env`` fixture would give is taken away, because ``devteam run``
must not need one for the user's own repository.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2
import pytest
from sqlalchemy import text
from tests.e2e.scripts import ALWAYS_FAILS
from tests.support.procs import DEVTEAM, ROOT

from devtools.demo.sample import EDITS, INITIAL, create_sample
from runner.tasklist import TaskList

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TASKS = ["1.1", "1.2", "2.1", "2.2", "2.3", "2.4"]
RUN_TIMEOUT = 480

SHORT_LIST = """# Calculator — two tasks

Phase 1: Core arithmetic (Dependencies: [])

- 1.1 Add and subtract (Dependencies: [])
  • files: src/calc/basic.py, tests/test_basic.py

- 1.2 Multiply and divide (Dependencies: [1.1])
  • files: src/calc/basic.py, tests/test_basic.py
"""


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict[str, Any]:
        """The ``--json`` line: the last line of stdout."""
        lines = self.stdout.strip().splitlines()
        assert lines, f"no JSON line on stdout; stderr:\n{self.stderr[-3000:]}"
        return dict(json.loads(lines[-1]))


def devteam_run(env: dict[str, str], *args: str, timeout: float = RUN_TIMEOUT) -> Ran:
    """``devteam run ARGS…`` with ``env``, as a user would type it (from another directory).
    On a timeout it gets SIGTERM first (which stops the execution and the relay and worker
    it started, as Ctrl-C does)."""
    proc = subprocess.Popen(
        [str(DEVTEAM), "run", *args], env=env, cwd=Path(env["DEVTEAM_WORKSPACE_ROOT"]).parent,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"devteam run did not end in {timeout}s:\n{err[-4000:]}")
    return Ran(proc.returncode, out, err)


@pytest.fixture
def user_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The test's environment, without any ``file://`` allowance and on a wide terminal."""
    values = {k: v for k, v in env.items() if k != "DEVTEAM_WORKSPACE_ALLOWED_FILE_ROOTS"}
    values["COLUMNS"] = "200"
    (tmp_path / "workspaces").mkdir(exist_ok=True)
    return values


@pytest.fixture
def run_dirs():
    """Remove the state ``devteam run`` left under ``.devteam/runs`` (its logs) afterwards."""
    made: list[Path] = []
    yield made
    for path in made:
        shutil.rmtree(path, ignore_errors=True)
        for parent in (path.parent, path.parent.parent):
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()


def logs_dir(ran: Ran) -> Path:
    found = re.search(r"logs in (\S+)", ran.stderr)
    assert found, ran.stderr[-3000:]
    return Path(found.group(1))


def assert_readable(ran: Ran) -> None:
    assert "Traceback" not in ran.stderr and "Traceback" not in ran.stdout, ran.stderr


def tree_file(repo: pygit2.Repository, ref: str, path: str) -> str | None:
    tree = repo.revparse_single(ref).peel(pygit2.Commit).tree
    try:
        blob = repo[tree[path].id]
    except KeyError:
        return None
    assert isinstance(blob, pygit2.Blob)
    return blob.data.decode()


async def project_row(store, execution_project: str) -> dict[str, Any]:
    async with store.transaction() as session:
        row = (await session.execute(text(
            "SELECT p.project_id, p.repository_url, x.status, x.user_id FROM projects p "
            "JOIN executions x ON x.project_id = p.project_id WHERE p.project_id = :p"),
            {"p": execution_project})).mappings().one()
    return dict(row)


async def test_a_working_copy_runs_end_to_end_and_gets_the_result_as_a_new_branch(
    store, tmp_path, user_env, run_dirs
):
    # Given the sample calculator as the user's own working copy, main checked out
    sample = create_sample(tmp_path / "sample")
    mine = tmp_path / "my-calc"
    repo = pygit2.clone_repository(str(sample.remote), str(mine))
    before = repo.head.target
    # When the user runs it with the sample's model script
    ran = devteam_run(user_env, "--repo", str(mine), "--model-script", str(sample.script),
                      "--json")
    run_dirs.append(logs_dir(ran).parent)
    # Then every task completed, and the JSON line says so
    assert_readable(ran)
    assert ran.code == 0, ran.stderr[-4000:]
    summary = ran.summary
    assert set(summary) == {"status", "completed", "total", "seconds", "setup", "tasks"}
    assert (summary["status"], summary["completed"], summary["total"]) == ("completed", 6, 6)
    assert 0 < summary["seconds"] < RUN_TIMEOUT
    assert set(summary["setup"]) == {"seconds", "cached"}
    assert isinstance(summary["setup"]["cached"], bool)
    assert summary["setup"]["seconds"] >= 0
    assert [t["id"] for t in summary["tasks"]] == TASKS
    for task in summary["tasks"]:
        assert (task["status"], task["merged"]) == ("done", True), task
    # 2.2 is scripted to fail its first verification
    assert {t["id"]: t["attempts"] for t in summary["tasks"]} == {
        "1.1": 1, "1.2": 1, "2.1": 1, "2.2": 2, "2.3": 1, "2.4": 1}
    # the user's checked-out branch did not move, and their working tree is as it was
    repo = pygit2.Repository(str(mine))
    assert repo.head.name == "refs/heads/main"
    assert repo.head.target == before
    assert repo.status() == {}
    # the result is a new branch of their repository, named on the console
    branches = [b for b in repo.branches.local if b.startswith("devteam/run-")]
    assert len(branches) == 1, list(repo.branches.local)
    result = branches[0]
    assert result in ran.stderr
    listing = TaskList.parse(tree_file(repo, f"refs/heads/{result}", "tasks_list.md") or "")
    assert listing.progress() == (6, 6)
    final: dict[str, str] = {}
    for files in EDITS.values():
        final.update(files)
    for path, content in final.items():
        assert tree_file(repo, f"refs/heads/{result}", path) == content, path
    work = Counter(c.message.split(":", 1)[0] for c in repo.walk(
        repo.branches.local[result].target) if re.match(r"^\d\.\d:", c.message))
    assert work == Counter(dict.fromkeys(TASKS, 1))
    # the project defaults to local/<repository name>; it ran on a bare copy, now removed
    row = await project_row(store, "local/my-calc")
    assert (row["status"], row["user_id"]) == ("completed", "devteam-run")
    copy = Path(row["repository_url"].removeprefix("file://"))
    assert copy.is_relative_to(ROOT / ".devteam" / "runs" / "local" / "my-calc")
    assert not copy.exists()
    # the sample's own remote was never pushed to
    assert pygit2.Repository(str(sample.remote)).branches.local["main"].target == before


async def test_a_task_that_cannot_pass_verification_pauses_for_a_person(
    store, tmp_path, user_env, run_dirs
):
    # Given a bare repository whose scripted model never gets task 1.1 right, and no
    # retries or error-resolution tasks
    sample = create_sample(tmp_path / "failing", files={**INITIAL, "tasks_list.md": SHORT_LIST},
                           script=ALWAYS_FAILS)
    before = pygit2.Repository(str(sample.remote)).branches.local["main"].target
    env = {**user_env, "DEVTEAM_PIPELINE_VERIFY_ROUNDS": "1",
           "DEVTEAM_PIPELINE_MAX_RESOLUTION_TASKS": "0"}
    # When the user runs it
    ran = devteam_run(env, "--repo", str(sample.remote), "--project", "acme/failing",
                      "--model-script", str(sample.script), "--json")
    run_dirs.append(logs_dir(ran).parent)
    # Then it returns as soon as the execution pauses for a person, with a non-zero exit
    assert_readable(ran)
    assert ran.code == 1, ran.stderr[-4000:]
    summary = ran.summary
    assert (summary["status"], summary["completed"], summary["total"]) == ("paused", 0, 2)
    assert summary["tasks"] == [
        {"id": "1.1", "status": "failed", "attempts": 1, "merged": False},
        {"id": "1.2", "status": "pending", "attempts": 0, "merged": False},
    ]
    assert "human_review" in ran.stderr
    # the bare repository was used directly, and nothing was merged into it
    row = await project_row(store, "acme/failing")
    assert row["status"] == "paused"
    assert row["repository_url"] == f"file://{sample.remote.resolve()}"
    assert pygit2.Repository(str(sample.remote)).branches.local["main"].target == before


@pytest.mark.parametrize("kind", ["plain-directory", "missing"])
def test_a_path_that_is_not_a_repository_is_refused_in_one_line(tmp_path, user_env, kind):
    path = tmp_path / "not-a-repo"
    if kind == "plain-directory":
        path.mkdir()
        (path / "tasks_list.md").write_text("- [ ] 1.1 Something (Dependencies: [])\n")
    ran = devteam_run(user_env, "--repo", str(path), "--json", timeout=60)
    assert ran.code == 2
    assert_readable(ran)
    assert ran.stdout == ""
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    assert str(path) in lines[0]
    assert "not a git repository" in lines[0] or "does not exist" in lines[0]


def test_a_repository_without_a_task_list_is_refused_in_one_line(tmp_path, user_env):
    files = {k: v for k, v in INITIAL.items() if k != "tasks_list.md"}
    sample = create_sample(tmp_path / "bare", files=files)
    mine = tmp_path / "no-list"
    pygit2.clone_repository(str(sample.remote), str(mine))
    ran = devteam_run(user_env, "--repo", str(mine), timeout=60)
    assert ran.code == 1
    assert_readable(ran)
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and "has no task list" in lines[0], ran.stderr
    assert list(pygit2.Repository(str(mine)).branches.local) == ["main"]


def test_a_bad_project_id_is_bad_usage(tmp_path, user_env):
    sample = create_sample(tmp_path / "sample")
    ran = devteam_run(user_env, "--repo", str(sample.remote), "--project", "no-slash",
                      timeout=60)
    assert ran.code == 2
    assert_readable(ran)
    assert "customer/project" in ran.stderr
