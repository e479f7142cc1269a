"""``devteam services up|down|status`` and ``devteam config``."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from runner.settings import describe, get_settings

app = typer.Typer(help="Start, stop and inspect the local stack (Postgres, Redis, dockerd).")
console = Console()


@app.command()
def up(
    docker: bool = typer.Option(True, help="Also make sure a Docker engine is reachable."),
) -> None:
    """Start whatever of the local stack is not running and wait until each answers."""
    from devtools.localstack import LocalStack, StackError

    try:
        LocalStack(get_settings()).up(docker=docker, log=lambda m: console.print(f"  {m}"))
    except StackError as exc:
        console.print(f"[red]services: {exc}[/red]")
        raise typer.Exit(1) from None


@app.command()
def down() -> None:
    """Stop exactly what ``up`` started, and any service process of ours still running."""
    from devtools.localstack import LocalStack

    LocalStack(get_settings()).down(log=lambda m: console.print(f"  {m}"))


@app.command()
def status() -> None:
    """Show each service with its port, whether it answers, and whether we started it."""
    from devtools.localstack import LocalStack

    table = Table("service", "port", "state", "started by us", "detail")
    rows = LocalStack(get_settings()).status()
    for s in rows:
        state = "[green]up[/green]" if s.up else "[red]down[/red]"
        table.add_row(s.name, s.port, state, "yes" if s.ours else "no", s.detail)
    console.print(table)
    if not all(s.up for s in rows):
        raise typer.Exit(1)


def config(
    markdown: bool = typer.Option(False, "--markdown", help="Print the README's table."),
) -> None:
    """List every ``DEVTEAM_*`` setting with its default and meaning."""
    if markdown:
        print("| Variable | Default | Meaning |")
        print("|---|---|---|")
        for name, default, doc in describe():
            if default == "":
                shown = "(empty)"
            elif "SECRET" in name or name.endswith(("_KEY", "_API_KEY")):
                shown = "(a development value; set your own)"
            else:
                shown = f"`{default}`"
            print(f"| `{name}` | {shown} | {doc} |")
        return
    table = Table("variable", "default", "meaning")
    for name, default, doc in describe():
        table.add_row(name, repr(default), doc)
    console.print(table)
