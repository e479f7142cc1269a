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
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from gateway.demo.progress import ProgressView, follow
from gateway.demo.sample import EDITS, Sample, create_sample
from pipeline import commands
from pipeline.audit import Principal
from pipeline.db import Store
from runner.scripted_model import ScriptedModelServer, load_script
from runner.settings import Settings, load_settings
from runner.tasklist import TaskList

DEVTEAM = Path(sys.executable).parent / "devteam"


@dataclass
class DemoResult:
    completed: int
    total: int
    attempts: int
    seconds: float
    ok: bool
    problems: list[str]


def _spawn(
    name: str, args: list[str], env: dict[str, str], logdir: Path
) -> subprocess.Popen[bytes]:
    log = (logdir / f"{name}.log").open("ab")
    return subprocess.Popen(
        [str(DEVTEAM), *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


async def run_demo(base: Settings, *, as_json: bool, workdir: Path | None = None) -> int:
    console = Console(stderr=as_json)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = workdir or base.path(base.stack.dir) / "demo" / stamp
    sample = create_sample(root)
    console.print(
        "[bold]DevTeam Runner demo[/bold] — the language model is [bold yellow]"
        "SCRIPTED[/bold yellow]: its edits are fixed in advance (see "
        f"{sample.script}); Aider, git, Docker, Postgres and Redis are real."
    )
    with ScriptedModelServer(load_script(sample.script)) as model:
        env = {
            **os.environ,
            "DEVTEAM_MODEL_API_BASE": model.url,
            "DEVTEAM_WORKSPACE_ALLOWED_FILE_ROOTS": str(root.resolve()),
            "DEVTEAM_LOG_FORMAT": "json",
        }
        settings = load_settings(env)
        logdir = root / "logs"
        logdir.mkdir(parents=True, exist_ok=True)
        procs = [
            _spawn("relay", ["relay"], env, logdir),
            _spawn("worker", ["worker", "--threads", "4"], env, logdir),
        ]
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
                f"project [bold]{project}[/bold], execution {result.execution_id}; logs in {logdir}"
            )
            with ProgressView(console, quiet=as_json) as view:
                completion = await follow(settings, result.execution_id, view.frame)
            seconds = time.monotonic() - started
            outcome = await _summarise(
                store, result.execution_id, sample, completion, seconds, console
            )
        finally:
            await store.close()
            _stop(procs)
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


async def _summarise(
    store: Store,
    execution_id: uuid.UUID,
    sample: Sample,
    completion: dict[str, Any],
    seconds: float,
    console: Console,
) -> DemoResult:
    async with store.transaction() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT task_id, stage, attempt, status, duration_ms, result FROM stage_runs "
                    "WHERE execution_id = :e AND task_id NOT LIKE '#%' AND task_id <> '' "
                    "ORDER BY id"
                ),
                {"e": execution_id},
            )
        ).all()
    tasks: dict[str, dict[str, Any]] = {}
    for task_id, stage, attempt, status, duration, result in rows:
        t = tasks.setdefault(
            task_id, {"branch": "", "attempts": 0, "ms": 0, "checks": "", "done": False}
        )
        t["ms"] += duration or 0
        if stage == "PREP" and result:
            t["branch"] = result.get("branch", "")
        if stage == "IMPLEMENT":
            t["attempts"] = max(t["attempts"], attempt)
        if stage == "VERIFY" and result:
            t["checks"] = ", ".join(
                f"{n} {'✓' if r['passed'] else '✗'} {r.get('actual')}"
                for n, r in result.get("results", {}).items()
            )
        if stage == "DONE" and status == "succeeded":
            t["done"] = True
    table = Table(
        "task",
        "branch",
        "attempts",
        "verification (last round)",
        "seconds",
        "status",
        title="Per task",
    )
    for task_id, t in tasks.items():
        table.add_row(
            task_id,
            t["branch"],
            str(t["attempts"]),
            t["checks"],
            f"{t['ms'] / 1000:.1f}",
            "done" if t["done"] else "not done",
        )
    console.print(table)
    problems = _check_remote(sample)
    if completion.get("status") != "completed":
        problems.insert(0, f"execution ended {completion.get('status')}")
    done = sum(1 for t in tasks.values() if t["done"])
    for p in problems:
        console.print(f"[red]✗ {p}[/red]")
    if not problems:
        console.print(
            f"[green]✓ all {done} tasks completed in {seconds:.0f}s; the remote's "
            "main holds the merged work and the task list shows every task done.[/green]"
        )
    return DemoResult(
        completed=done,
        total=int(completion.get("totalTasks", 0)),
        attempts=sum(t["attempts"] for t in tasks.values()),
        seconds=seconds,
        ok=not problems,
        problems=problems,
    )


def _check_remote(sample: Sample) -> list[str]:
    """What the remote's default branch shows, independently of the database."""
    repo = pygit2.Repository(str(sample.remote))
    tree = repo.revparse_single("refs/heads/main").peel(pygit2.Commit).tree
    problems = []
    tasks = TaskList.parse(_blob(repo, tree, "tasks_list.md").decode())
    done, total = tasks.progress()
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
