"""``devteam``: one command line for every process and tool of the service.

Each layer owns its commands; this module only assembles them, so the CLI sits on top of
the dependency order (gateway → pipeline → runner) like the gateway itself.
"""

from __future__ import annotations

import typer

from gateway.cli import services

app = typer.Typer(
    name="devteam",
    help="DevTeam Runner: run a repository's task list autonomously, and watch it happen.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(services.app, name="services")
app.command("config")(services.config)


def main() -> None:
    """Console-script entry point."""
    app()
