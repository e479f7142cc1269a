"""``devteam demo``: the main job, end to end, on a sample project.

Creates the sample calculator repository (six tasks, one scripted to fail verification on
its first attempt) behind a bare remote on disk, starts the scripted model, a relay and a
worker, submits the project, shows live progress from the notifications, and ends with a
table per task. Exit code 0 only if every task completed, the remote's default branch holds
the merged work and its task list shows every task done.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pygit2
from rich.console import Console
from rich.text import Text

from devtools.demo.sample import EDITS, Sample, create_sample
from devtools.local.checks import require_engines
from devtools.local.errors import CommandError
from devtools.local.processes import local_pipeline
from devtools.local.progress import ProgressView, follow
from devtools.local.report import execution_report, task_table
from pipeline import commands
from pipeline.audit import Principal
from pipeline.db import Store
from runner.settings import Settings, load_settings
from runner.tasklist import TaskList


@dataclass
class DemoResult:
    completed: int
    total: int
    attempts: int
    seconds: float
    ok: bool
    problems: list[str]


async def run_demo(base: Settings, *, as_json: bool, workdir: Path | None = None) -> int:
    console = Console(stderr=as_json)
    try:
        await require_engines(base, model=False)
    except CommandError as exc:
        console.print(Text(f"devteam demo: {exc}", style="red"))
        return exc.code
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = workdir or base.path(base.stack.dir) / "demo" / stamp
    sample = create_sample(root)
    console.print(
        "[bold]DevTeam Runner demo[/bold] — the language model is [bold yellow]"
        "SCRIPTED[/bold yellow]: its edits are fixed in advance (see "
        f"{sample.script}); Aider, git, Docker, Postgres and Redis are real."
    )
    with local_pipeline(
        root / "logs", allowed_roots=[root], model_script=sample.script
    ) as pipeline:
        settings = pipeline.settings
        store = Store.from_settings(settings, pool_size=2)
        started = time.monotonic()
        try:
            project = f"demo/calc-{stamp}-{uuid.uuid4().hex[:4]}"
            result = await commands.start_execution(
                store,
                principal=Principal(user_id="demo", correlation_id=uuid.uuid4().hex),
                project_id=project,
                repository_url=sample.url,
            )
            console.print(
                f"project [bold]{project}[/bold], execution {result.execution_id}; "
                f"logs in {pipeline.logdir}"
            )
            with ProgressView(console, quiet=as_json) as view:
                await follow(settings, result.execution_id, view.frame, check=pipeline.check)
            seconds = time.monotonic() - started
            report = await execution_report(store, result.execution_id, _remote_tasks(sample))
        finally:
            await store.close()
    console.print(task_table(report.tasks))
    problems = _check_remote(sample)
    if report.status != "completed":
        problems.insert(0, f"execution ended {report.status}")
    for p in problems:
        console.print(f"[red]✗ {p}[/red]")
    if not problems:
        console.print(
            f"[green]✓ all {report.completed} tasks completed in {seconds:.0f}s; the remote's "
            "main holds the merged work and the task list shows every task done.[/green]"
        )
    outcome = DemoResult(
        completed=report.completed,
        total=report.total,
        attempts=report.attempts,
        seconds=seconds,
        ok=not problems,
        problems=problems,
    )
    if as_json:
        print(
            json.dumps(
                {
                    "completed": outcome.completed,
                    "total": outcome.total,
                    "attempts": outcome.attempts,
                    "seconds": round(outcome.seconds, 1),
                    "ok": outcome.ok,
                    "problems": outcome.problems,
                }
            )
        )
    return 0 if outcome.ok else 1


def _remote_tasks(sample: Sample) -> TaskList:
    repo = pygit2.Repository(str(sample.remote))
    tree = repo.revparse_single("refs/heads/main").peel(pygit2.Commit).tree
    return TaskList.parse(_blob(repo, tree, "tasks_list.md").decode())


def _check_remote(sample: Sample) -> list[str]:
    """What the remote's default branch shows, independently of the database."""
    repo = pygit2.Repository(str(sample.remote))
    tree = repo.revparse_single("refs/heads/main").peel(pygit2.Commit).tree
    problems = []
    done, total = _remote_tasks(sample).progress()
    if done != total:
        problems.append(f"the remote task list shows {done} of {total} tasks done")
    final: dict[str, str] = {}
    for files in EDITS.values():
        final.update(files)  # a later task's edit of the same file wins
    for path, content in final.items():
        try:
            data = _blob(repo, tree, path)
        except KeyError:
            problems.append(f"{path} is missing on the remote's main")
            continue
        if data.decode() != content:
            problems.append(f"{path} on the remote's main is not the merged work")
    return problems


def _blob(repo: pygit2.Repository, tree: pygit2.Tree, path: str) -> bytes:
    obj = repo[tree[path].id]
    assert isinstance(obj, pygit2.Blob)
    return obj.data


def main(as_json: bool) -> int:
    return asyncio.run(run_demo(load_settings(), as_json=as_json))
