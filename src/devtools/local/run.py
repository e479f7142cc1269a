"""``devteam run``: a repository's task list, end to end, on this machine.

The one-shot way to try the service on your own repository. It checks the engines and
the repository first (one readable line when something is wrong), starts a relay and a
worker (and the scripted model with ``--model-script``; otherwise the configured model),
submits the project through the same command API the gateway uses, shows live progress,
and returns when the execution completes, fails, stops or pauses for a person. It ends
with a table per task and, with ``--json``, one JSON line (the last line of stdout):

    {"status", "completed", "total", "seconds", "setup": {"seconds", "cached"},
     "tasks": [{"id", "status", "attempts", "merged"}]}

Exit code 0 only when every task of the list is done; 1 otherwise (paused, error,
stopped, or the run could not start); 2 for bad usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pygit2
from rich.console import Console
from rich.text import Text

from devtools.local.checks import require_engines
from devtools.local.errors import FAILED, USAGE, CommandError
from devtools.local.processes import LocalPipeline, local_pipeline
from devtools.local.progress import ProgressView, follow
from devtools.local.report import ExecutionReport, execution_report, task_table
from devtools.local.repository import FoundTaskList, Target, resolve_target
from gateway.auth import is_project_id
from pipeline import commands, executions
from pipeline.audit import Principal
from pipeline.db import Store
from pipeline.lifecycle import TERMINAL, Status, TransitionError
from runner.errors import RunnerError
from runner.settings import Settings, SettingsError, get_settings

RUN_USER = "devteam-run"
"""The user ``devteam run`` starts executions as; an execution of this user that an
earlier run left paused is stopped before the project runs again."""
LOCAL_CUSTOMER = "local"
STOP_WAIT_SECONDS = 120.0


@dataclass(frozen=True)
class RunRequest:
    repo: str
    project: str | None = None
    model_script: Path | None = None
    as_json: bool = False


def main(request: RunRequest) -> int:
    """Run and return the exit code; every expected failure is one line on stderr."""
    console = Console(stderr=request.as_json, highlight=False, soft_wrap=True)
    err = console if request.as_json else Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        settings = get_settings()
        return asyncio.run(run_repository(settings, request, console))
    except SettingsError as exc:
        return _fail(err, str(exc), USAGE)
    except CommandError as exc:
        return _fail(err, str(exc), exc.code)
    except RunnerError as exc:
        return _fail(err, exc.message, FAILED)
    except KeyboardInterrupt:
        return _fail(err, "interrupted", 130)


def _fail(console: Console, message: str, code: int) -> int:
    console.print(Text(f"devteam run: {message}", style="red"))
    return code


def default_project(name: str) -> str:
    """``local/<name>`` with every character a project id may not hold replaced by ``-``."""
    part = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:100] or "repository"
    return f"{LOCAL_CUSTOMER}/{part}"


async def run_repository(settings: Settings, request: RunRequest, console: Console) -> int:
    started = time.monotonic()
    _cancel_on_sigterm()
    target = resolve_target(request.repo, settings)
    project = request.project if request.project is not None else default_project(target.name)
    if not is_project_id(project):
        raise CommandError(
            f"--project {project!r} must be customer/project (letters, digits, _ and - in "
            "each part, at most 200 characters)",
            code=USAGE,
        )
    customer, name = project.split("/")
    if request.model_script is not None:
        _check_script(request.model_script)
    found = await asyncio.to_thread(target.task_list, customer)
    if found is None:
        raise CommandError(
            f"{target.label} has no task list (tasks_list.md or "
            "task_lists.md at the top of the branch); add one and commit it"
        )
    if not found.tasks.leaves():
        raise CommandError(f"{found.path} lists no tasks")
    await require_engines(settings, model=request.model_script is None)
    done, total = found.tasks.progress()
    model = (
        f"SCRIPTED from {request.model_script}"
        if request.model_script
        else f"{settings.model.name} at {settings.model.api_base}"
    )
    console.print(f"[bold]devteam run[/bold] {target.describe()}")
    console.print(f"{found.path}: {total} tasks, {done} done · project {project} · model {model}")
    if target.dirty:
        console.print("[yellow]uncommitted changes are not part of the run: it starts from the "
                      "last commit[/yellow]")
    stamp = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    workdir = settings.path(settings.stack.dir) / "runs" / customer / name / stamp
    run = Started()
    report: ExecutionReport | None = None
    try:
        url, roots = await asyncio.to_thread(target.stage, workdir)
        with local_pipeline(
            workdir / "logs", allowed_roots=roots, model_script=request.model_script
        ) as pipeline:
            report = await _execute(pipeline, run, project, url, found, target, console,
                                    quiet=request.as_json)
    finally:
        # Whatever ended the run, what it merged is brought back before the copy goes.
        where = await asyncio.to_thread(_bring_back, target, run.execution_id)
        if report is None and where:
            console.print(where)
        await asyncio.to_thread(target.cleanup, settings, customer)
    seconds = time.monotonic() - started
    _print_outcome(console, report, seconds, where)
    if request.as_json:
        print(json.dumps(summary_line(report, seconds)), flush=True)
    return 0 if report.all_done else 1


def summary_line(report: ExecutionReport, seconds: float) -> dict[str, object]:
    """The ``--json`` line."""
    return {
        "status": report.status,
        "completed": report.completed,
        "total": report.total,
        "seconds": round(seconds, 1),
        "setup": report.setup.wire(),
        "tasks": [t.wire() for t in report.tasks],
    }


def _check_script(path: Path) -> None:
    from devtools.scripted_model import load_script

    try:
        load_script(path)
    except RunnerError as exc:
        raise CommandError(f"--model-script: {exc.message}", code=USAGE) from None


@dataclass
class Started:
    """The execution a run started, once it has."""

    execution_id: uuid.UUID | None = None


def _bring_back(target: Target, execution_id: uuid.UUID | None) -> str:
    if execution_id is None:
        return ""
    try:
        return target.bring_back(execution_id)
    except (pygit2.GitError, OSError, KeyError) as exc:
        return f"the result could not be brought back: {exc}"


async def _execute(
    pipeline: LocalPipeline,
    run: Started,
    project: str,
    url: str,
    found: FoundTaskList,
    target: Target,
    console: Console,
    *,
    quiet: bool,
) -> ExecutionReport:
    """Start the execution, follow it to its end, and read back what it did."""
    store = Store.from_settings(pipeline.settings, pool_size=2)
    principal = Principal(user_id=RUN_USER, correlation_id=uuid.uuid4().hex)
    try:
        await _end_earlier_run(store, project, principal, pipeline, console)
        started = await commands.start_execution(
            store, principal=principal, project_id=project, repository_url=url
        )
        execution = run.execution_id = started.execution_id
        console.print(f"execution {execution}; logs in {pipeline.logdir}")
        with ProgressView(console, quiet=quiet) as view:
            try:
                await follow(pipeline.settings, execution, view.frame, limit_seconds=None,
                             check=pipeline.check)
            except asyncio.CancelledError:  # Ctrl-C: stop the execution, then report
                _uncancel()
                console.print("[yellow]interrupted: stopping the execution (Ctrl-C again "
                              "leaves it as it is)[/yellow]")
                await _stop(store, principal, project)
                await _wait_ended(store, execution, pipeline)
        async with store.reads() as tx:
            row = await executions.project(tx, project)
        path = str((row or {}).get("task_list_path") or found.path)
        customer = project.split("/", 1)[0]
        final = await asyncio.to_thread(target.final_task_list, path, customer)
        return await execution_report(store, execution, (final or found).tasks)
    finally:
        await store.close()


async def _end_earlier_run(
    store: Store, project: str, principal: Principal, pipeline: LocalPipeline, console: Console
) -> None:
    """An execution an earlier ``devteam run`` left paused (or stopping) is ended first:
    nothing else would ever continue it. Any other active execution is refused."""
    async with store.reads() as tx:
        earlier = await executions.latest_for_project(tx, project)
    if earlier is None or earlier.state in TERMINAL:
        return
    ours = earlier.user_id == RUN_USER
    if ours and earlier.state is Status.PAUSED:
        why = f" ({earlier.pause_reason})" if earlier.pause_reason else ""
        console.print(f"an earlier run of {project} was left paused{why}: stopping it first")
        await _stop(store, principal, project)
    elif not (ours and earlier.state is Status.STOPPING):
        raise CommandError(
            f"{project} already has an execution that is {earlier.status} ({earlier.id}, "
            f"started by {earlier.user_id}); let it end, or run under another --project"
        )
    if not await _wait_ended(store, earlier.id, pipeline):
        raise CommandError(f"the earlier execution {earlier.id} of {project} did not stop")


async def _stop(store: Store, principal: Principal, project: str) -> None:
    with contextlib.suppress(TransitionError, commands.ExecutionNotFound):  # it ended meanwhile
        await commands.stop(store, principal=principal, project_id=project)


async def _wait_ended(store: Store, execution: uuid.UUID, pipeline: LocalPipeline) -> bool:
    """Poll the execution row until it is terminal (True) or STOP_WAIT_SECONDS pass."""
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while time.monotonic() < deadline:
        async with store.reads() as tx:
            row = await executions.get(tx, execution)
        if row is None or row.state in TERMINAL:
            return True
        pipeline.check()
        await asyncio.sleep(0.5)
    return False


def _cancel_on_sigterm() -> None:
    """SIGTERM does what Ctrl-C does (also where SIGINT is ignored, as in a background
    job): the first stops the execution and reports, a second one leaves it as it is;
    either way the processes the run started are stopped."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


def _print_outcome(console: Console, report: ExecutionReport, seconds: float, where: str) -> None:
    console.print(task_table(report.tasks))
    counts = f"{report.completed} of {report.total} tasks done"
    if report.all_done:
        console.print(f"[green]✓ completed: {counts} in {seconds:.0f}s[/green]")
    elif report.status == Status.PAUSED:
        console.print(
            f"[yellow]paused for a person ({report.pause_reason}): {counts}[/yellow]"
        )
    else:
        console.print(f"[red]✗ {report.status}: {counts}[/red]")
    if report.error and not report.all_done:
        console.print(Text(f"  last error: {report.error}", style="red"))
    if report.setup.runs:
        cache = "every one a cache hit" if report.setup.cached else "not all from the cache"
        console.print(f"setup: {report.setup.runs} run(s), {report.setup.seconds:.1f}s, {cache}")
    console.print(where)
