"""What an execution left behind, read from the places a person would look: the remote
repository, the notifications table, the Docker engine and the workspace root."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import docker
import pygit2
from sqlalchemy import text

from devtools.demo.sample import EDITS, Sample
from pipeline.db import Store
from runner.dockerhost import docker_base_url
from runner.settings import get_settings
from runner.tasklist import TaskList

TRAILER = re.compile(r"^Task-Id: (.+)$", re.M)


def main_commits(sample: Sample) -> list[pygit2.Commit]:
    repo = pygit2.Repository(str(sample.remote))
    head = repo.revparse_single("refs/heads/main").peel(pygit2.Commit)
    return list(repo.walk(head.id, pygit2.enums.SortMode.TOPOLOGICAL))


def remote_task_list(sample: Sample) -> TaskList:
    repo = pygit2.Repository(str(sample.remote))
    tree = repo.revparse_single("refs/heads/main").peel(pygit2.Commit).tree
    return TaskList.parse(repo[tree["tasks_list.md"].id].data.decode())


def remote_file(sample: Sample, path: str) -> str | None:
    repo = pygit2.Repository(str(sample.remote))
    tree = repo.revparse_single("refs/heads/main").peel(pygit2.Commit).tree
    try:
        return repo[tree[path].id].data.decode()
    except KeyError:
        return None


def ref_updates(sample: Sample) -> Counter[str]:
    """How many times each ref of the remote was updated (its reflog; pushes only)."""
    counts: Counter[str] = Counter()
    logs = sample.remote / "logs" / "refs" / "heads"
    for path in logs.rglob("*") if logs.exists() else []:
        if path.is_file():
            ref = str(path.relative_to(logs))
            counts[ref] = len(path.read_text().splitlines())
    return counts


def assert_remote_complete(sample: Sample, task_ids: list[str]) -> None:
    """Every task done in the remote's list, its work merged once, each push done once."""
    tasks = remote_task_list(sample)
    done, total = tasks.progress()
    assert (done, total) == (len(task_ids), len(task_ids))
    final: dict[str, str] = {}
    for files in EDITS.values():
        final.update(files)
    for path, content in final.items():
        assert remote_file(sample, path) == content, path
    messages = [c.message for c in main_commits(sample)]
    work = Counter(m.split(":", 1)[0] for m in messages if not m.startswith(("Mark task", "Merge",
                                                                             "Start")))
    assert work == Counter(dict.fromkeys(task_ids, 1)), work
    marks = Counter(m.split("\n")[0] for m in messages if m.startswith("Mark task"))
    assert marks == Counter({f"Mark task {t} done": 1 for t in task_ids}), marks
    outcomes = remote_file(sample, "task_outcomes.md") or ""
    assert sorted(re.findall(r"^## (\S+) ", outcomes, re.M)) == sorted(task_ids)
    # formatted the way Prettier and markdownlint accept: blank lines around headings and
    # the markers, so a project that checks its Markdown is not failed by this file
    assert not re.search(r"^(#+ .*|<!-- devteam:.*-->)\n(?!\n)", outcomes, re.M), outcomes
    assert outcomes.endswith("\n") and not outcomes.endswith("\n\n")
    updates = ref_updates(sample)
    # main was created once, then moved twice per task (merged work, then the task list);
    # each task branch was pushed once
    assert updates["main"] == 1 + 2 * len(task_ids), updates
    branches = {k: v for k, v in updates.items() if k.startswith("task/")}
    assert len(branches) == len(task_ids) and set(branches.values()) == {1}, branches


async def frames(store: Store, execution_id: uuid.UUID) -> list[dict[str, Any]]:
    async with store.transaction() as session:
        rows = (await session.execute(text(
            "SELECT seq, type, payload FROM notifications WHERE execution_id = :e ORDER BY seq"),
            {"e": execution_id})).all()
    return [{"seq": r[0], "type": r[1], "payload": r[2]} for r in rows]


async def assert_frames_gapless(store: Store, execution_id: uuid.UUID, last: str) -> list[dict]:
    """Seq 1..N; ``completion`` is the last frame, after the execution's final update."""
    got = await frames(store, execution_id)
    assert [f["seq"] for f in got] == list(range(1, len(got) + 1))
    assert got[-1]["type"] == "completion" and got[-1]["payload"]["status"] == last
    assert got[-2]["type"] == "execution-update" and got[-2]["payload"]["status"] == last
    return got


def assert_updates_honest(got: list[dict[str, Any]]) -> None:
    """No ``execution-update`` repeats the one before it; ``branch`` is always the current
    task's (``task/<its id>-...``), null with no current task, as in SELECT."""
    updates = [f["payload"] for f in got if f["type"] == "execution-update"]
    assert updates
    for before, after in zip(updates, updates[1:], strict=False):
        assert before != after, after
    for update in updates:
        task, branch = update["taskId"], update["branch"]
        if update["stage"] == "SELECT" or task is None:
            assert branch is None, update
        elif branch is not None:
            assert branch.startswith("task/" + task.replace(".", "-") + "-"), update


def containers_of(execution_id: uuid.UUID) -> list[str]:
    client = docker.DockerClient(base_url=docker_base_url(get_settings()))
    try:
        found = client.containers.list(
            all=True, filters={"label": f"devteam.execution={execution_id}"})
        volumes = client.volumes.list(filters={"label": f"devteam.execution={execution_id}"})
        return [c.name for c in found] + [v.name for v in volumes]
    finally:
        client.close()


def working_copy(project_id: str, execution_id: uuid.UUID) -> Path:
    settings = get_settings()
    customer, project = project_id.split("/")
    return settings.path(settings.workspace.root) / customer / "work" / project / str(execution_id)


async def stage_runs(store: Store, execution_id: uuid.UUID) -> list[dict[str, Any]]:
    async with store.transaction() as session:
        rows = (await session.execute(text(
            "SELECT task_id, stage, attempt, status, claims, result, error FROM stage_runs "
            "WHERE execution_id = :e ORDER BY id"), {"e": execution_id})).mappings().all()
    return [dict(r) for r in rows]
