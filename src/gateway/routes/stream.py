"""``WS /ws/devteam`` and ``GET /api/devteam/stream`` (SSE): the same frames, with replay.

Query: ``projectId`` (or ``project_id``, repeatable; none = every project the token
grants), ``since`` (cursor; SSE also ``Last-Event-ID``), ``types`` (comma-separated frame
types), ``level`` (minimum log level), ``token`` (browsers cannot set headers).

A stream lasts as long as its token: when the token expires (``exp`` plus the leeway) the
WebSocket is closed with 4401 "token expired", and an SSE response sends a last ``error``
frame saying so and ends. The client reconnects with a fresh token and its cursor
(``since`` or ``Last-Event-ID``) and misses nothing.

A stream follows at most ``MAX_PROJECTS`` ``projectId`` values (more is 400, or close
4400: each one is indexed, checked and sent to the database with every replay page), and
a 400 quotes a bad value cut short. One user, and one customer, may only have so many
streams open at once (``gateway.streams_per_user``, ``gateway.streams_per_customer``):
one more is answered 429 with ``Retry-After`` (SSE) or closed 1013 (WebSocket).

A cursor is ASCII digits only (anything else is 400, or close 4400). Control frames
(``connection-established``, ``error``, ``resync``, ``pong``, ``replay-complete``) name
the project when the socket is scoped to one. SSE frames carry ``event: <type>`` beside
``data``. Once the backlog has been sent (at once without ``since``), one
``replay-complete`` says so: every frame after it is live.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import structlog
from litestar import Request, WebSocket, get, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.response import Stream

from gateway.auth import PROJECT_ID, Authenticator, Principal, bearer
from gateway.fanout import (
    LEVELS,
    REPLAY_COMPLETE,
    Hub,
    Item,
    Subscriber,
    control_frame,
    replay_complete_payload,
    resync_payload,
)
from gateway.frames import ConnectionEstablished, Ping, Pong, StreamError, is_cursor
from gateway.problems import Problem
from gateway.quota import TooManyStreams
from gateway.validation import echo
from runner.limits import head_bytes
from runner.settings import Settings

log = structlog.get_logger("devteam.stream")

MAX_CLIENT_FRAME = 10 * 1024
EXPIRED = "token expired"
FRAME_TYPES = {"execution-update", "execution-log", "error", "completion"}
MAX_PROJECTS = 50
"""``projectId`` values one stream may name (repeats included): each is checked against
the token, indexed by the hub and sent to the database with every replay page. A client
following more leaves ``projectId`` out (every project its token grants)."""
UNKNOWN_TYPES_NAMED = 5
"""Unknown frame types a 400 names at most (the rest are counted)."""

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_BAD_QUERY = 4400
CLOSE_UNAVAILABLE = 1013
CLOSE_CODES: dict[int, str] = {
    CLOSE_BAD_QUERY: "the query is invalid (projectId, since, types or level; the reason "
                     "names it): fix it, do not retry as is",
    CLOSE_UNAUTHORIZED: "no valid token, or the token expired (reason 'token expired'): "
                        "reconnect with a fresh token and since=<last id>; never retry "
                        "with the same token",
    CLOSE_FORBIDDEN: "the token does not grant a projectId asked for: do not retry",
    CLOSE_UNAVAILABLE: "the stream is unavailable for now (the database, or this user or "
                       "customer has as many streams open as allowed: the reason says "
                       "which): retry with backoff and since=<last id>",
}
"""Every code the server closes a WebSocket with, and what the client should do."""


class StreamQuery(msgspec.Struct, frozen=True):
    projects: frozenset[str]
    types: frozenset[str]
    min_level: int
    since: int | None

    @property
    def project(self) -> str | None:
        """The one project the socket is scoped to (control frames name it), else None."""
        return next(iter(self.projects)) if len(self.projects) == 1 else None


def parse_query(params: Any, last_event_id: str | None = None) -> StreamQuery:
    """Validate the stream's query; raises Problem(400) naming the bad parameter."""
    projects = [*params.getall("projectId", []), *params.getall("project_id", [])]
    if len(projects) > MAX_PROJECTS:
        raise Problem(400, f"a stream follows at most {MAX_PROJECTS} projectId values, "
                           f"not {len(projects)}; leave projectId out to follow every "
                           "project the token grants",
                      errors=[{"field": "projectId",
                               "message": f"at most {MAX_PROJECTS} values"}])
    for p in projects:
        if not PROJECT_ID.match(p):
            raise Problem(400, f"projectId {echo(p)} is not customer/project",
                          errors=[{"field": "projectId", "message": "must match customer/project"}])
    types: set[str] = set()
    for value in params.getall("types", []):
        types.update(t for t in value.split(",") if t)
    unknown = sorted(types - FRAME_TYPES)
    if unknown:
        named = ", ".join(echo(t) for t in unknown[:UNKNOWN_TYPES_NAMED])
        more = len(unknown) - UNKNOWN_TYPES_NAMED
        raise Problem(400, f"unknown frame types: {named}"
                           + (f" and {more} more" if more > 0 else ""),
                      errors=[{"field": "types", "message": "unknown frame type"}])
    level = params.get("level")
    if level is not None and level not in LEVELS:
        raise Problem(400, "level must be debug, info, warning or error",
                      errors=[{"field": "level", "message": "unknown level"}])
    raw_since = params.get("since") or last_event_id
    since = None
    if raw_since is not None:
        if not is_cursor(raw_since):
            raise Problem(400, "since is not a cursor this server issued",
                          errors=[{"field": "since", "message": "invalid cursor"}])
        since = int(raw_since)
    minimum = LEVELS.get(level or "debug", 0)
    return StreamQuery(frozenset(projects), frozenset(types), minimum, since)


def _reason(detail: str) -> str:
    """``detail`` as a close reason: at most 120 bytes of UTF-8 (the frame allows 123)."""
    return head_bytes(detail, 120)


def _principal(auth: Authenticator, header: str | None, token: str | None) -> Principal:
    return auth.authenticate(bearer(header) or token)


def _check_projects(principal: Principal, query: StreamQuery) -> None:
    for project in query.projects:
        if not principal.may_read(project):
            raise Problem(403, "this token does not grant access to that project")


@websocket("/ws/devteam")
async def ws_stream(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    auth: Authenticator = socket.app.state.auth
    hub: Hub = socket.app.state.hub
    settings: Settings = socket.app.state.settings
    try:
        principal = _principal(auth, socket.headers.get("authorization"),
                               socket.query_params.get("token"))
    except Problem as exc:
        await socket.close(code=CLOSE_UNAUTHORIZED, reason=_reason(exc.detail))
        return
    try:
        query = parse_query(socket.query_params)
        _check_projects(principal, query)
    except Problem as exc:
        await socket.close(code=CLOSE_FORBIDDEN if exc.status == 403 else CLOSE_BAD_QUERY,
                           reason=_reason(exc.detail))
        return
    sub = Subscriber(principal=principal, projects=query.projects, types=query.types,
                     min_level=query.min_level, queue_size=settings.gateway.ws_queue_size)
    # subscribed before the client hears it is connected: nothing after that can be missed
    try:
        cursor = await hub.subscribe(sub, query.since)
    except TooManyStreams as exc:
        await socket.close(code=CLOSE_UNAVAILABLE, reason=_reason(exc.detail))
        return
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        log.warning("stream.unavailable", error=type(exc).__name__)
        await socket.close(code=CLOSE_UNAVAILABLE, reason="the stream is unavailable; try again")
        return
    reader: asyncio.Task[None] | None = None
    sender: asyncio.Task[None] | None = None
    expiry = asyncio.create_task(_until(principal.valid_until))
    try:
        await socket.send_text(_established(query).decode())
        reader = asyncio.create_task(_read_client(socket, query.project))
        sender = asyncio.create_task(_send_frames(socket, hub.frames(sub, cursor),
                                                  query.project))
        # until the client goes away, the token expires or sending fails; a frame not
        # sent by then is replayed from the client's cursor
        await asyncio.wait({sender, reader, expiry}, return_when=asyncio.FIRST_COMPLETED)
        if sender.done():
            sender.result()
        if expiry.done():
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            await socket.close(code=CLOSE_UNAUTHORIZED, reason=EXPIRED)
    except (WebSocketDisconnect, ConnectionError, RuntimeError):
        pass
    finally:
        hub.remove(sub)
        for task in (sender, reader, expiry):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


async def _until(deadline: float) -> None:
    """Return at ``deadline`` (Unix time; never for an infinite one)."""
    if deadline == float("inf"):
        await asyncio.Event().wait()
    await asyncio.sleep(max(0.0, deadline - time.time()))


def _established(query: StreamQuery) -> bytes:
    return control_frame(ConnectionEstablished(
        connection_id=uuid.uuid4().hex,
        resumed_from=None if query.since is None else str(query.since)), query.project)


async def _send_frames(socket: WebSocket[Any, Any, Any], frames: AsyncIterator[Item],
                       project: str | None) -> None:
    """Send every frame of ``frames`` (run as a task of its own, cancelled when the client
    goes away or the token expires: one task per socket, not one per frame)."""
    try:
        async for item in frames:
            await socket.send_text(_encode(item, project).decode())
    finally:
        with contextlib.suppress(Exception):
            await frames.aclose()  # type: ignore[attr-defined]


CONTROL_ITEMS = {"resync", REPLAY_COMPLETE}
"""Items of ``Hub.frames`` that are sent as control frames (no cursor)."""


def _encode(item: Item, project: str | None) -> bytes:
    if item.type == "resync":
        return control_frame(resync_payload(item), project)
    if item.type == REPLAY_COMPLETE:
        return control_frame(replay_complete_payload(item), project)
    return item.data


async def _read_client(socket: WebSocket[Any, Any, Any], project: str | None) -> None:
    """Client frames: at most 10 KB of JSON with a ``type``; bad ones get an error frame."""
    while True:
        message = await socket.receive()
        if message["type"] == "websocket.disconnect":
            return
        raw = message.get("text") or message.get("bytes") or b""
        data = raw.encode() if isinstance(raw, str) else bytes(raw) if isinstance(
            raw, bytes | bytearray) else b""
        if len(data) > MAX_CLIENT_FRAME:
            await socket.send_text(control_frame(StreamError(
                classification="client", message="frame larger than 10 KB dropped"),
                project).decode())
            continue
        try:
            msgspec.json.decode(data, type=Ping)  # the only client frame
            ping = True
        except (msgspec.DecodeError, RecursionError):  # 10 KB of "[" recurses too deep
            ping = False
        if ping:
            await socket.send_text(control_frame(Pong(), project).decode())
        else:
            await socket.send_text(control_frame(StreamError(
                classification="client",
                message="malformed frame (expected JSON with a known type)"),
                project).decode())


@get("/api/devteam/stream", summary="The live stream as Server-Sent Events", tags=["stream"],
     include_in_schema=False)
async def sse_stream(request: Request[Any, Any, Any]) -> Stream:
    auth: Authenticator = request.app.state.auth
    hub: Hub = request.app.state.hub
    settings: Settings = request.app.state.settings
    principal = _principal(auth, request.headers.get("authorization"),
                           request.query_params.get("token"))
    query = parse_query(request.query_params, request.headers.get("last-event-id"))
    _check_projects(principal, query)
    sub = Subscriber(principal=principal, projects=query.projects, types=query.types,
                     min_level=query.min_level, queue_size=settings.gateway.ws_queue_size)
    try:  # refused while it can still be a 429; ``subscribe`` counts it, in the stream
        hub.quota.check(sub)
    except TooManyStreams as exc:
        raise Problem(429, exc.detail, headers={"Retry-After": str(exc.retry_after)}) from None
    ping = settings.gateway.ws_ping_seconds

    async def events() -> AsyncIterator[bytes]:
        # subscribed before the client hears it is connected: nothing after can be missed
        try:
            cursor = await hub.subscribe(sub, query.since)
        except TooManyStreams as exc:  # others opened meanwhile: say so, the client retries
            yield b"event: error\ndata: " + control_frame(StreamError(
                classification="client", message=exc.detail), query.project) + b"\n\n"
            return
        frames = hub.frames(sub, cursor).__aiter__()
        pending: asyncio.Future[Item] | None = None
        try:
            yield (b"retry: 2000\nevent: connection-established\ndata: " + _established(query)
                   + b"\n\n")
            while True:
                left = principal.valid_until - time.time()
                if left <= 0:
                    yield b"event: error\ndata: " + control_frame(StreamError(
                        classification="client",
                        message=f"{EXPIRED}: reconnect with a fresh token and "
                                "Last-Event-ID"), query.project) + b"\n\n"
                    return
                if pending is None:
                    pending = asyncio.ensure_future(frames.__anext__())
                done, _ = await asyncio.wait({pending}, timeout=min(ping, left))
                if not done:
                    if principal.valid_until > time.time():
                        yield b": ping\n\n"
                    continue
                item = pending.result()
                pending = None
                # ``event: <type>``: browsers dispatch it to addEventListener(type)
                if item.type in CONTROL_ITEMS:
                    yield (b"event: " + item.type.encode() + b"\ndata: "
                           + _encode(item, query.project) + b"\n\n")
                else:
                    yield (b"id: " + str(item.pos).encode() + b"\nevent: " + item.type.encode()
                           + b"\ndata: " + item.data + b"\n\n")
        finally:
            hub.remove(sub)
            if pending is not None:
                pending.cancel()
            with contextlib.suppress(Exception):
                await frames.aclose()  # type: ignore[attr-defined]

    return Stream(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


handlers = [ws_stream, sse_stream]
