"""``devteam demo`` and ``devteam submit``: the main job, and starting one without HTTP."""

from __future__ import annotations

import asyncio
import json
import uuid

import typer
from rich.console import Console

from gateway.auth import PROJECT_ID
from runner.settings import get_settings


def demo(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary line at the end."),
) -> None:
    """Run the sample project end to end (scripted model; real Aider, git, Docker)."""
    from gateway.demo.run import main

    raise typer.Exit(main(as_json))


def submit(
    repo: str = typer.Option(..., "--repo", help="Repository URL (https, ssh or allowed file://)."),
    project: str = typer.Option(..., "--project", help="customer/project"),
    stop_point: str = typer.Option(None, "--stop-point", help="Pause before this task (or stage)."),
    user: str = typer.Option("cli", "--user", help="Recorded as the execution's user."),
    watch: bool = typer.Option(False, "--watch", help="Show progress until the execution ends."),
) -> None:
    """Start an execution of a project's task list (same transaction as the HTTP API)."""
    from gateway.demo.progress import ProgressView, follow
    from pipeline import commands
    from pipeline.audit import Principal
    from pipeline.db import Store
    from pipeline.lifecycle import TransitionError

    if not PROJECT_ID.match(project):
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
            except TransitionError as exc:
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
