"""``devteam scripted-model``: run the scripted model server in the foreground.

The lead mounts :func:`command` on the ``devteam`` application::

    app.command("scripted-model")(scripted_model.cli.command)
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from devtools.scripted_model.server import RecordedRequest


def command(
    script: Annotated[
        Path, typer.Option("--script", help="TOML script of the replies, per task id.")
    ],
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0 picks one).")] = 18080,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Serve an OpenAI-compatible chat-completions API answering with scripted edits.

    Point Aider at it with ``DEVTEAM_MODEL_API_BASE=http://HOST:PORT/v1``. The script is
    re-read when the file changes. Stops on Ctrl-C / SIGTERM.
    """
    import uvicorn

    from devtools.scripted_model.script import ScriptError
    from devtools.scripted_model.server import ScriptedModel, create_app

    def announce(request: RecordedRequest) -> None:
        task = request.task_id or "(no Task-Id)"
        typer.echo(f"scripted model: task {task} attempt {request.attempt}", err=True)

    try:
        model = ScriptedModel(script, on_request=announce)
    except ScriptError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    sock = socket.create_server((host, port))
    bound_host, bound_port = sock.getsockname()[:2]
    tasks = len(model.script().tasks)
    typer.echo(
        f"scripted model: {tasks} scripted task(s) from {script}, "
        f"serving http://{bound_host}:{bound_port}/v1",
        err=True,
    )
    config = uvicorn.Config(
        create_app(model), log_level="warning", access_log=False, lifespan="off"
    )
    uvicorn.Server(config).run(sockets=[sock])
