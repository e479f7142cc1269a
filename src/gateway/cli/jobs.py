"""``devteam run``, ``devteam demo`` and ``devteam submit``: a repository's task list end to
end on this machine, the same on the sample project, and starting one without HTTP."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import typer
from rich.console import Console

from runner.settings import get_settings


def run(
    repo: str = typer.Option(
        ..., "--repo", help="Your repository: a local path (bare or not) or a URL."
    ),
    project: str | None = typer.Option(
        None, "--project", help="customer/project (default: local/<repository name>)."
    ),
    model_script: Path | None = typer.Option(
        None, "--model-script",
        help="Answer with the scripted model from this TOML file (default: the configured "
        "model, DEVTEAM_MODEL_*).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary line at the end."),
) -> None:
    """Run a repository's task list end to end on this machine, with live progress.

    Starts a relay and a worker (and the scripted model with --model-script).

    Returns when the execution completes, fails, stops or pauses for a person.

    A local working copy is never pushed into: the result comes back as branch devteam/run-<id>.

    Exit 0 only when every task is done; 1 otherwise; 2 for bad usage.
    """
    from devtools.local.run import RunRequest, main

    raise typer.Exit(
        main(RunRequest(repo=repo, project=project, model_script=model_script, as_json=as_json))
    )


def demo(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary line at the end."),
) -> None:
    """Run the sample project end to end (scripted model; real Aider, git, Docker)."""
    from devtools.demo.run import main

    raise typer.Exit(main(as_json))


def submit(
    repo: str = typer.Option(..., "--repo", help="Repository URL (https, ssh or allowed file://)."),
    project: str = typer.Option(..., "--project", help="customer/project"),
    stop_point: str = typer.Option(None, "--stop-point", help="Pause before this task (or stage)."),
    user: str = typer.Option("cli", "--user", help="Recorded as the execution's user."),
    watch: bool = typer.Option(False, "--watch", help="Show progress until the execution ends."),
) -> None:
    """Start an execution of a project's task list (same transaction as the HTTP API)."""
    from devtools.local.progress import ProgressView, follow
    from gateway.auth import is_project_id
    from pipeline import commands
    from pipeline.audit import Principal
    from pipeline.db import Store
    from pipeline.lifecycle import TransitionError
    from runner.errors import ConfigError

    if not is_project_id(project):
        raise typer.BadParameter("project must be customer/project", param_hint="--project")
    settings = get_settings()
    console = Console()

    async def run() -> int:
        store = Store.from_settings(settings, pool_size=2)
        try:
            try:
                started = await commands.start_execution(
                    store,
                    principal=Principal(user_id=user, correlation_id=uuid.uuid4().hex),
                    project_id=project,
                    repository_url=repo,
                    stop_point=stop_point,
                )
            except (TransitionError, ConfigError) as exc:
                console.print(f"[red]{exc}[/red]")
                return 2
            console.print(
                json.dumps(
                    {
                        "executionId": str(started.execution_id),
                        "eventId": str(started.event_id),
                        "status": started.status,
                    }
                )
            )
            if not watch:
                return 0
            with ProgressView(console) as view:
                completion = await follow(settings, started.execution_id, view.frame)
            return 0 if completion.get("status") == "completed" else 1
        finally:
            await store.close()

    raise typer.Exit(asyncio.run(run()))
