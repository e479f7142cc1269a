"""Follow one execution's notifications straight from Postgres and show them with rich.

Used by ``devteam run``, ``devteam demo`` and ``devteam submit --watch``: no gateway
needed. Frames are read in ``seq`` order after a LISTEN wake-up (or a poll), exactly like
the gateway's fanout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from pipeline.db import asyncpg_dsn
from pipeline.stream import STREAM_CHANNEL
from runner.settings import Settings

TERMINAL = {"completed", "stopped", "error"}
USER_PAUSE = "user"
"""The one pause that does not end following: a user paused from the API or the dashboard
and will resume or stop it. Every other pause (``human_review``, ``stop_point``, and any
the pipeline adds) waits for a person, so nothing more would happen."""


def ending(frame: dict[str, Any]) -> dict[str, Any] | None:
    """The payload that ends following, if ``frame`` is one: the ``completion`` frame, or
    an ``execution-update`` pausing for a person (``{status: "paused", pauseReason, ...}``)."""
    payload = frame["payload"]
    if frame["type"] == "completion":
        return dict(payload)
    if (
        frame["type"] == "execution-update"
        and payload.get("status") == "paused"
        and payload.get("pauseReason") != USER_PAUSE
    ):
        return dict(payload)
    return None


async def follow(
    settings: Settings,
    execution_id: uuid.UUID,
    on_frame: Callable[[dict[str, Any]], None],
    *,
    limit_seconds: float | None = 3600,
    check: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Call ``on_frame`` for every frame of the execution, in order, until it ends (see
    :func:`ending`); returns the ending frame's payload.

    ``check`` is called about once a second while waiting; whatever it raises ends the
    wait (the caller's way to notice that the worker it started has died).
    """
    dsn = asyncpg_dsn(settings.database.url)
    conn = await asyncpg.connect(dsn)
    wake = asyncio.Event()
    await conn.add_listener(STREAM_CHANNEL, lambda *_: wake.set())
    reader = await asyncpg.connect(dsn)
    seq = 0
    try:
        async with asyncio.timeout(limit_seconds):
            while True:
                rows = await reader.fetch(
                    "SELECT seq, type, payload::text AS payload, created_at FROM notifications "
                    "WHERE execution_id = $1 AND seq > $2 ORDER BY seq",
                    execution_id,
                    seq,
                )
                for row in rows:
                    seq = int(row["seq"])
                    frame = {"seq": seq, "type": row["type"], "payload": json.loads(row["payload"])}
                    on_frame(frame)
                    end = ending(frame)
                    if end is not None:
                        return end
                if check is not None:
                    check()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=1.0)
                wake.clear()
    finally:
        await conn.close()
        await reader.close()


class ProgressView:
    """A progress bar for the execution and its log lines, printed as they arrive."""

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[where]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=quiet,
        )
        self.bar = self.progress.add_task("execution", total=100, where="starting")

    def __enter__(self) -> ProgressView:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def frame(self, frame: dict[str, Any]) -> None:
        if self.quiet:
            return
        payload = frame["payload"]
        kind = frame["type"]
        if kind == "execution-update":
            where = (
                f"{payload.get('status')} · task {payload.get('taskId') or '-'} · "
                f"{payload.get('stage') or '-'}"
            )
            if payload.get("pauseReason"):
                where += f" ({payload['pauseReason']})"
            self.progress.update(self.bar, completed=payload.get("progress", 0), where=where)
        elif kind == "execution-log":
            style = {"error": "red", "warning": "yellow"}.get(payload.get("level"), "dim")
            for line in payload.get("lines", [])[-20:]:
                self.console.print(
                    Text(f"{payload.get('stage', ''):>15} │ {line}", style=style), highlight=False
                )
        elif kind == "error":
            self.console.print(
                Text(
                    f"error {payload.get('classification')}: {payload.get('message')}", style="red"
                )
            )
        elif kind == "completion":
            self.progress.update(
                self.bar,
                completed=100
                if payload.get("status") == "completed"
                else self.progress.tasks[0].completed,
                where=str(payload.get("status")),
            )
