"""``devteam``: one command line for every process and tool of the service.

Each layer owns its commands; this module only assembles them, so the CLI sits on top of
the dependency order (gateway → pipeline → runner) like the gateway itself.
"""

from __future__ import annotations

import typer

from devtools.scripted_model import cli as scripted_model_cli
from gateway.cli import jobs, runtime, services, watching
from runner.sandbox import cli as sandbox_cli
from runner.tasklist import cli as tasklist_cli

app = typer.Typer(
    name="devteam",
    help="DevTeam Runner: run a repository's task list autonomously, and watch it happen.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(services.app, name="services")
app.command("config")(services.config)
app.command("serve")(runtime.serve)
app.command("relay")(runtime.relay)
app.command("worker")(runtime.worker)
app.command("token")(runtime.token)
app.command("ping")(runtime.ping)
app.command("watch")(watching.command)
app.command("run")(jobs.run)
app.command("demo")(jobs.demo)
app.command("submit")(jobs.submit)
app.add_typer(sandbox_cli.app, name="image", help="Build and inspect the sandbox images.")
app.command("reap")(sandbox_cli.reap)
app.command("scripted-model")(scripted_model_cli.command)
app.add_typer(tasklist_cli.app, name="tasks", help="Read, check and edit task-list files.")


def main() -> None:
    """Console-script entry point."""
    app()
