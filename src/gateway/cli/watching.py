"""``devteam watch``: its arguments, checked before anything connects. The watcher itself
(``gateway.watch``: httpx, websockets, rich's live display) is loaded when the command
runs, so every other command starts without it."""

from __future__ import annotations

from typing import Annotated

import typer

from gateway.frames import is_cursor


def command(
    projects: Annotated[list[str] | None, typer.Argument(
        metavar="PROJECT", help="customer/project to watch (default: every one granted).",
        show_default=False)] = None,
    *,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="DEVTEAM_TOKEN", show_default=False,
        help="JWT (prefer the DEVTEAM_TOKEN variable: a command line is visible to others).",
    )] = None,
    url: Annotated[str, typer.Option("--url", help="The gateway.")] = "http://127.0.0.1:8000",
    since: Annotated[str | None, typer.Option(
        "--since", help="Resume after this cursor (0: the whole history).")] = None,
    once_complete: Annotated[bool, typer.Option(
        "--once-complete",
        help="Exit when every watched execution ended: 0 if all completed, 1 otherwise.",
    )] = False,
    plain: Annotated[bool | None, typer.Option(
        "--plain/--live", show_default=False,
        help="Plain lines or a live table (default: live on a terminal).")] = None,
) -> None:
    """Watch executions live: a progress bar per execution and the log tail."""
    from gateway import watch

    if not token:
        raise typer.BadParameter("give --token or set DEVTEAM_TOKEN", param_hint="--token")
    if since is not None and not is_cursor(since):
        raise typer.BadParameter("a cursor is a frame id (ASCII digits)", param_hint="--since")
    try:
        watch.subject_of(token)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--token") from None
    raise typer.Exit(watch.run(projects=tuple(projects or ()), token=token, url=url,
                               since=since, once_complete=once_complete, plain=plain))
