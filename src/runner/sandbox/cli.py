"""``devteam image build`` and ``devteam reap``: the sandbox's commands (the Docker SDK is
loaded when one runs, not by every ``devteam`` command).

``app`` holds both; the top-level CLI mounts ``build`` under ``image`` and ``reap`` on its
own. ``reap_once`` is the same pass for callers that know which executions are live (the
pipeline passes a query of its executions table).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import typer
from rich.console import Console

from runner.errors import RunnerError
from runner.settings import Settings, get_settings

if TYPE_CHECKING:
    from runner.sandbox.reaper import LiveExecutions, ReapReport

app = typer.Typer(help="Build the sandbox images; reap what finished executions left behind.")
console = Console(stderr=True)


@app.command()
def build(
    base: str = typer.Option("", help="Base image (default: settings.sandbox.base_image)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if up to date."),
) -> None:
    """Build the base image if missing, then the runner image if ``containers/`` changed."""
    from runner.sandbox.engine import make_client
    from runner.sandbox.image import build_image

    settings = get_settings()
    try:
        client = make_client(settings, timeout=600)
        try:
            report = build_image(
                client,
                settings,
                base=base or None,
                force=force,
                log=lambda m: console.print(f"  {m}", markup=False),
            )
        finally:
            client.close()
    except RunnerError as exc:
        console.print(f"[red]image: {exc.message}[/red]")
        raise typer.Exit(1) from None
    state = "built" if report.image_built else "up to date"
    console.print(f"image: {report.image} {state} (base {report.base})")


def reap_once(
    settings: Settings | None = None,
    live_executions: LiveExecutions | None = None,
    *,
    grace_seconds: float = 60.0,
) -> ReapReport:
    """One reaper pass with the configured engine, workspace root and age limit."""
    from runner.sandbox import labels as lbl
    from runner.sandbox.engine import make_client
    from runner.sandbox.reaper import Reaper

    settings = settings or get_settings()
    client = make_client(settings)
    try:
        reaper = Reaper(
            client,
            live_executions=live_executions,
            workspace_root=settings.path(settings.workspace.root),
            max_age_hours=settings.workspace.max_age_hours,
            grace_seconds=grace_seconds,
            scope={lbl.DEPLOYMENT: lbl.deployment_of(settings)},
        )
        return reaper.run_once()
    finally:
        client.close()


@app.command()
def reap(
    live: list[str] = typer.Option(
        [], "--live", help="An execution still running (repeatable)."
    ),
    orphans: bool = typer.Option(
        False, "--orphans", help="Also remove containers of executions not given by --live."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Remove expired sandbox containers and volumes and old working copies.

    Without ``--orphans`` liveness is unknown, so only expired objects go.
    """
    provider: LiveExecutions | None = (lambda: live) if orphans else None
    try:
        report = reap_once(get_settings(), provider)
    except RunnerError as exc:
        console.print(f"[red]reap: {exc.message}[/red]")
        raise typer.Exit(1) from None
    if as_json:
        print(msgspec.json.encode(report).decode())
    else:
        for kind, items in (
            ("container", report.containers),
            ("volume", report.volumes),
            ("workspace", report.workspaces),
        ):
            for item in items:
                print(f"removed {kind} {item}")
        for error in report.errors:
            console.print(f"[yellow]could not remove: {error}[/yellow]")
        print(f"reaped {report.total}")
    if report.errors:
        raise typer.Exit(1)
