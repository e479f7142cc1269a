"""``devteam watch``: follow executions live in a terminal (progress bars and a log tail).

The watcher opens the live stream (``WS /ws/devteam``), learns where the watched
executions stand from the REST API, then applies every frame. When the socket drops it
reconnects (tenacity) with exponential backoff and jitter (:func:`backoff_delay`, capped
at 30 s) and resumes from the last cursor it saw, so it misses nothing and shows nothing
twice.

On a terminal it draws a live table (rich); otherwise (a pipe, a CI log) it prints one
plain line per frame, which is also what scripts and tests read. The token travels only in
the ``Authorization`` header and the WebSocket query; it is never printed.

What a frame carries is partly the coding model's output, so an attacker's: control
characters in it are shown as escapes (``ESC`` as ``\\x1b``, :func:`visible`) and rich
renders it as plain ``Text``, never markup. A log line can therefore neither erase or
redraw what the terminal shows, fake a line of its own, nor reach the clipboard (OSC 52).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import websockets
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_base
from websockets.asyncio.client import ClientConnection

TERMINAL = frozenset({"completed", "stopped", "error"})
FATAL_CLOSES = {4400: "bad request", 4401: "token rejected", 4403: "project not granted"}
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
QUIET_SECONDS = 1.0

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """``text`` safe to write to a terminal: each control character (C0 with TAB and
    newline, DEL, C1) written as its escape, ``\\x1b`` for ``ESC``, and each bidirectional
    mark, embedding, override or isolate as ``\\u202e`` and the like (they reorder how the
    rest of the line reads)."""
    return _CONTROL.sub(lambda m: (f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                   else f"\\u{ord(m.group()):04x}"), text)


def backoff_delay(
    attempt: int, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0 for the first retry).

    Exponential with "equal jitter": a uniform pick between half and all of
    ``min(cap, base * 2**attempt)``. The floor doubles with each attempt (so retries back
    off for real), the spread keeps many clients from reconnecting in lockstep after a
    restart, and the result never exceeds ``cap``.
    """
    ceiling = min(cap, base * 2.0 ** min(attempt, 32))
    return float(ceiling / 2 + rand() * ceiling / 2)


class Backoff(wait_base):
    """The wait of :func:`follow`'s reconnect loop (a tenacity wait strategy): counts the
    reconnect attempts since the last connection that got as far as
    ``connection-established``, so the delay starts again from the first window then."""

    def __init__(self) -> None:
        self.attempt = 0

    def __call__(self, retry_state: RetryCallState) -> float:
        return self.next_delay()

    def next_delay(self) -> float:
        delay = backoff_delay(self.attempt)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class ExecutionView:
    """What the watcher knows about one execution."""

    execution_id: str
    project_id: str
    order: tuple[int, Any]
    status: str = "unknown"
    progress: int = 0
    stage: str | None = None
    task: str | None = None
    branch: str | None = None
    completed: int = 0
    total: int = 0


@dataclass
class WatchState:
    """The watched executions, the log tail and the resume cursor.

    Per project only its newest execution is *current*. "Newest" is decided by how an
    execution became known: seen starting on the stream (its ``seq`` 1, ordered by
    cursor) beats known from the REST snapshot (ordered by ``startedAt``), which beats
    first seen mid-run (older frames still in flight when the snapshot was taken).
    """

    projects: tuple[str, ...] = ()
    tail: int = 200
    cursor: str | None = None
    executions: dict[str, ExecutionView] = field(default_factory=dict)
    current: dict[str, str] = field(default_factory=dict)
    seeded: set[str] = field(default_factory=set)
    log: deque[str] = field(init=False)

    def __post_init__(self) -> None:
        self.log = deque(maxlen=self.tail)

    def seed(self, summary: dict[str, Any]) -> None:
        """Take an execution summary from the REST API (status or active list)."""
        view = self._view(summary["executionId"], summary["projectId"],
                          (1, summary.get("startedAt") or ""))
        totals = summary.get("totals") or {}
        view.status, view.progress = summary["status"], int(summary.get("progress") or 0)
        view.stage, view.task = summary.get("currentStage"), summary.get("currentTask")
        view.branch = summary.get("branch")
        view.completed, view.total = totals.get("completed", 0), totals.get("total", 0)
        self.seeded.add(view.execution_id)

    def apply(self, frame: dict[str, Any]) -> list[str]:
        """Apply one stream frame; returns its plain-text lines (empty for control frames)."""
        if frame.get("id") is not None:
            self.cursor = str(frame["id"])
        if not frame.get("executionId"):
            return []
        seq, pos = int(frame.get("seq") or 0), int(frame.get("id") or 0)
        view = self._view(frame["executionId"], frame["projectId"], (2 if seq == 1 else 0, pos))
        p: dict[str, Any] = frame.get("payload") or {}
        head = f"{view.project_id} #{seq}"
        kind = frame["type"]
        if kind == "execution-update":
            view.status, view.progress = p.get("status") or view.status, int(p.get("progress") or 0)
            view.stage, view.task, view.branch = p.get("stage"), p.get("taskId"), p.get("branch")
            view.completed = p.get("completedTasks", view.completed)
            view.total = p.get("totalTasks", view.total)
            reason = f" ({p['pauseReason']})" if p.get("pauseReason") else ""
            branch = f" branch {view.branch}" if view.branch else ""
            where = f"task {view.task or '-'} stage {view.stage or '-'}{branch}"
            lines = [f"{head} {view.status}{reason} {view.progress}% {where}"]
        elif kind == "completion":
            view.status = p.get("status") or view.status
            view.completed, view.total = p.get("completedTasks", 0), p.get("totalTasks", 0)
            if view.status == "completed":
                view.progress = 100
            seconds = int(p.get("durationMs") or 0) / 1000
            done = f"{view.completed}/{view.total} tasks"
            lines = [f"{head} {view.status}: {done} in {seconds:.1f} s"]
        elif kind == "execution-log":
            where = " ".join(str(x) for x in (p.get("stage"), p.get("taskId")) if x)
            lines = [f"{head} {p.get('level', 'info')} {where} | {line}"
                     for line in p.get("lines") or []]
        elif kind == "error":
            stage, what = p.get("stage") or "-", p.get("classification")
            lines = [f"{head} ERROR {stage} {what}: {p.get('message')}"]
        else:
            lines = [f"{head} {kind}"]
        lines = [visible(line) for line in lines]
        if kind in ("execution-log", "error"):
            self.log.extend(lines)
        return lines

    def _view(self, execution_id: str, project_id: str, order: tuple[int, Any]) -> ExecutionView:
        view = self.executions.get(execution_id)
        if view is None:
            view = self.executions[execution_id] = ExecutionView(execution_id, project_id, order)
        elif order[0] > view.order[0]:
            view.order = order
        now = self.current.get(project_id)
        if now is None or (now != execution_id and view.order > self.executions[now].order):
            self.current[project_id] = execution_id
        return view

    def watched(self) -> list[ExecutionView]:
        """The current execution of each project, by project."""
        return [self.executions[self.current[p]] for p in sorted(self.current)]

    def done(self) -> bool:
        """Every watched execution (and every one the snapshot named) reached its end."""
        if not self.current or any(p not in self.current for p in self.projects):
            return False
        views = [*self.watched(), *(self.executions[e] for e in self.seeded)]
        return all(v.status in TERMINAL for v in views)

    def exit_code(self) -> int:
        """0 when every watched execution completed, 1 otherwise."""
        return 0 if all(v.status == "completed" for v in self.watched()) else 1


def render(state: WatchState, notice: str, log_lines: int = 15) -> RenderableType:
    """The live view: one progress row per watched execution, then the log tail."""
    table = Table(expand=True, title=Text(visible(notice)), title_justify="left")
    for name in ("Project", "Status", "Progress", "Task", "Stage", "Branch"):
        table.add_column(name, no_wrap=name != "Branch")
    for v in state.watched():
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=100, completed=v.progress, width=24), f"{v.progress:3d}%")
        style = {"completed": "green", "error": "red", "stopped": "red", "paused": "yellow"}
        table.add_row(Text(visible(str(v.project_id))),
                      Text(visible(str(v.status)), style=style.get(v.status, "cyan")), bar,
                      *(Text(visible(str(x or "-"))) for x in (v.task, v.stage, v.branch)))
    tail = list(state.log)[-log_lines:]
    return Group(table, Panel(Text("\n".join(tail) or "(no log lines yet)"), title="log"))


class Output:
    """Where the watcher reports: a live table on a terminal, plain lines otherwise."""

    def __init__(self, console: Console, state: WatchState, live: bool) -> None:
        self.console, self.state, self.notice_text = console, state, "connecting…"
        self.live = Live(console=console, refresh_per_second=4,
                         get_renderable=lambda: render(state, self.notice_text)) if live else None

    def notice(self, text: str) -> None:
        self.notice_text = text = visible(text)
        if self.live is None:
            self.lines([f"# {text}"])

    def lines(self, lines: list[str]) -> None:
        if self.live is None and lines:
            self.console.file.write("".join(f"{line}\n" for line in lines))
            self.console.file.flush()


def subject_of(token: str) -> str:
    """The token's ``sub`` claim, read without verifying (the server verifies)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        return str(claims["sub"])
    except (jwt.InvalidTokenError, KeyError) as exc:
        raise ValueError("the token is not a JWT with a subject") from exc


@dataclass(frozen=True)
class WatchOptions:
    url: str
    token: str
    projects: tuple[str, ...] = ()
    since: str | None = None
    once_complete: bool = False


class RefusedError(Exception):
    """The server refused us for good (bad token, project not granted): do not retry."""


def stream_url(options: WatchOptions, cursor: str | None) -> str:
    """The WebSocket address (the only URL that carries the token)."""
    base = options.url.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    params = [("token", options.token), *(("projectId", p) for p in options.projects)]
    if cursor is not None:
        params.append(("since", cursor))
    return f"{base}/ws/devteam?{urlencode(params)}"


async def snapshot(http: httpx.AsyncClient, options: WatchOptions) -> list[dict[str, Any]]:
    """Where the watched executions stand now: each named project's latest execution, or
    (no project named) every active execution the token's user may see."""
    if not options.projects:
        response = await http.get(f"/api/devteam/executions/active/{subject_of(options.token)}")
        response.raise_for_status()
        return list(response.json())
    found = []
    for project in options.projects:
        response = await http.get(f"/api/devteam/automation/status/{project}")
        if response.status_code == 404:
            continue
        if response.status_code in (401, 403):
            raise RefusedError(f"{project}: {response.json().get('detail', response.status_code)}")
        response.raise_for_status()
        found.append(response.json())
    return found


class Reconnect(Exception):
    """The connection ended in a way worth retrying; ``reason`` is safe to print."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def follow(options: WatchOptions, state: WatchState, out: Output) -> int:
    """Watch until interrupted, or with ``once_complete`` until every watched execution
    ended (returns 0 if all completed, 1 otherwise). Returns 2 when refused for good.

    Reconnects (tenacity) for as long as it takes, waiting ``Backoff`` between attempts."""
    state.cursor = options.since
    backoff = Backoff()

    def reconnecting(retry_state: RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome is not None else None
        reason = exc.reason if isinstance(exc, Reconnect) else "reconnecting"
        delay = retry_state.next_action.sleep if retry_state.next_action is not None else 0.0
        out.notice(f"{reason}; reconnecting in {delay:.1f} s")

    headers = {"Authorization": f"Bearer {options.token}"}
    async with httpx.AsyncClient(base_url=options.url, headers=headers, timeout=10) as http:
        retrying = AsyncRetrying(retry=retry_if_exception_type(Reconnect), wait=backoff,
                                 before_sleep=reconnecting, reraise=True)
        return await retrying(_connect_once, http, options, state, out, backoff)


async def _connect_once(
    http: httpx.AsyncClient, options: WatchOptions, state: WatchState, out: Output,
    backoff: Backoff,
) -> int:
    """One connection: the exit code to stop with, or ``Reconnect`` to try again."""
    try:
        async with websockets.connect(
            stream_url(options, state.cursor), open_timeout=10, max_size=2**22,
            close_timeout=2,
        ) as ws:
            code, reason = await _session(ws, http, options, state, out, backoff)
            if code is not None:
                return code
    except websockets.ConnectionClosed as exc:
        close = exc.rcvd.code if exc.rcvd else None
        if exc.rcvd is not None and exc.rcvd.code in FATAL_CLOSES:
            out.notice(f"stopped: {refusal(exc.rcvd.code, exc.rcvd.reason, state.cursor)}")
            return 2
        reason = f"connection lost ({close or 'no close frame'})"
    except RefusedError as exc:
        out.notice(f"stopped: {exc}")
        return 2
    except (OSError, TimeoutError, websockets.InvalidHandshake, httpx.HTTPError,
            ValueError) as exc:
        reason = _describe(exc)
    raise Reconnect(reason)


async def _session(
    ws: ClientConnection, http: httpx.AsyncClient, options: WatchOptions, state: WatchState,
    out: Output, backoff: Backoff,
) -> tuple[int | None, str]:
    """One connection: ``(exit code, "")`` to stop, ``(None, reason)`` to reconnect."""
    hello = json.loads(await ws.recv())
    if hello.get("type") != "connection-established":
        return None, f"unexpected first frame {hello.get('type')!r}"
    backoff.reset()
    resumed = (hello.get("payload") or {}).get("resumedFrom")
    out.notice("connected" + (f" (resumed from {resumed})" if resumed else ""))
    if not state.seeded:
        for summary in await snapshot(http, options):
            state.seed(summary)
    # While a history replays (--since) its intermediate states mislead: then the end is
    # only decided once the stream goes quiet.
    eager = options.once_complete and options.since is None
    if eager and state.done():
        return state.exit_code(), ""
    while True:
        try:
            async with asyncio.timeout(QUIET_SECONDS if options.once_complete else None):
                message = await ws.recv()  # cancelling recv() loses nothing
        except TimeoutError:
            if state.done():
                return state.exit_code(), ""
            continue
        except websockets.ConnectionClosedOK:
            break
        out.lines(state.apply(json.loads(message)))
        if eager and state.done():
            return state.exit_code(), ""
    close = ws.close_code
    if close in FATAL_CLOSES:
        raise RefusedError(refusal(close, ws.close_reason or "", state.cursor))
    return None, f"closed ({close})"


def refusal(code: int, reason: str, cursor: str | None) -> str:
    """Why the server closed for good, and (for an expired token) how to go on: a stream
    ends when its token expires, and a fresh token resumes it from the cursor."""
    text = f"{FATAL_CLOSES[code]} ({code})" + (f": {reason}" if reason else "")
    if reason == "token expired" and cursor is not None:
        text += f"; resume with a fresh token and --since {cursor}"
    return text


def _describe(exc: BaseException) -> str:
    """A reason safe to print: never the URL (it carries the token)."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, websockets.InvalidStatus):
        return f"refused (HTTP {exc.response.status_code})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot connect ({exc.strerror})"
    return f"cannot connect ({type(exc).__name__})"


def run(*, projects: tuple[str, ...], token: str, url: str, since: str | None,
        once_complete: bool, plain: bool | None) -> int:
    """Watch until done or interrupted, and return the exit code (``follow``'s, or 130 on
    Ctrl-C). ``devteam watch`` (``gateway.cli.watching``) checks the arguments first."""
    console = Console(highlight=False, emoji=False)
    state = WatchState(projects=projects)
    out = Output(console, state, live=console.is_terminal if plain is None else not plain)
    options = WatchOptions(url=url, token=token, projects=state.projects, since=since,
                           once_complete=once_complete)
    try:
        if out.live is not None:
            with out.live:
                return asyncio.run(follow(options, state, out))
        return asyncio.run(follow(options, state, out))
    except KeyboardInterrupt:
        return 130
