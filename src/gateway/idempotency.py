"""``Idempotency-Key`` on state-changing endpoints, stored in Postgres.

1. A short transaction claims ``(user, key)``: new → in flight; same body and finished →
   replay the stored response byte for byte with ``Idempotent-Replayed: true``; different
   body → 422; still in flight → 409; expired (6 h) → treated as new.
2. The operation runs inside ``store.unit()`` and the finished response is written in the
   same transaction as the operation's own changes (the store port joins the unit), so
   a state change is never recorded without its response (or the reverse). A 5xx frees
   the key for a retry.
3. The claim is locked for ``gateway.idempotency_lock_seconds`` (60 s) and, while the
   operation runs, renewed every third of that (``locked_until`` moved forward), so a
   retry answers 409 however long the operation takes (an Aider run on ``/implement``
   takes minutes); a crash mid-way stops the renewal and leaves the key locked only until
   ``locked_until``, then a retry takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import structlog
from litestar import Request, Response

from gateway.auth import Principal
from gateway.http import settings_of
from gateway.problems import Problem, problem_response
from pipeline.db import Store, StoreUnavailable

TTL = timedelta(hours=6)
HEADER = "idempotency-key"
_VALID = re.compile(r"^[\x21-\x7e]{1,255}\Z")
_REPLAY_HEADERS = ("content-type", "location")
_log = structlog.get_logger("devteam.idempotency")


def key_of(request: Request[Any, Any, Any]) -> str | None:
    value = request.headers.get(HEADER)
    if value is None:
        return None
    if not _VALID.match(value):
        raise Problem(
            400,
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
            errors=[{"field": "Idempotency-Key", "message": "1-255 visible ASCII characters"}],
        )
    return value


def request_hash(request: Request[Any, Any, Any], body: bytes) -> str:
    h = hashlib.sha256()
    h.update(request.method.encode())
    h.update(b" ")
    h.update(request.url.path.encode())
    h.update(b"\n")
    h.update(body)
    return h.hexdigest()


async def run(
    store: Store,
    request: Request[Any, Any, Any],
    principal: Principal,
    operation: Callable[[], Awaitable[Response[bytes]]],
    key: str | None = None,
    *,
    atomic: bool = True,
    single: bool = False,
) -> Response[bytes]:
    """Run ``operation`` at most once per ``(user, Idempotency-Key)``.

    ``atomic`` runs it inside ``store.unit()`` so its database writes and the stored
    response commit together. Operations whose effect lives outside the database (a git
    branch, a container run: ``/prep``, ``/implement``, ``/verify``) pass ``atomic=False``:
    they must not hold a transaction open for seconds, nor pull the sandbox's slot
    bookkeeping into it; their response is stored right after they finish.

    ``single``: the operation writes in one transaction of its own (a start), so without
    a key, when there is no response to store with it, it runs without an outer unit
    (and may then commit by itself in one statement: ``Store.statement``).
    """
    key = key if key is not None else key_of(request)
    if key is None:
        if not atomic or single:
            return await operation()
        async with store.unit():
            return await operation()
    digest = request_hash(request, await request.body())
    lock = timedelta(seconds=settings_of(request).gateway.idempotency_lock_seconds)
    replay = await _claim(store, principal.user_id, key, digest, lock)
    if replay is not None:
        return replay
    try:
        async with _renewed(store, principal.user_id, key, lock):
            response = await _run(store, principal.user_id, key, operation, atomic=atomic)
    except Problem as problem:
        if problem.status >= 500:
            await _release(store, principal.user_id, key)
            raise
        response = problem_response(request, problem)
        await _finish(store, principal.user_id, key, response)
        return response
    except BaseException:
        await _release(store, principal.user_id, key)
        raise
    if (response.status_code or 200) >= 500:
        await _release(store, principal.user_id, key)
    return response


async def _run(
    store: Store,
    user: str,
    key: str,
    operation: Callable[[], Awaitable[Response[bytes]]],
    *,
    atomic: bool,
) -> Response[bytes]:
    """The operation, and its response stored when it is not a 5xx."""
    if atomic:
        async with store.unit():
            response = await operation()
            if (response.status_code or 200) < 500:
                await _finish(store, user, key, response)
        return response
    response = await operation()
    if (response.status_code or 200) < 500:
        await _finish(store, user, key, response)
    return response


@contextlib.asynccontextmanager
async def _renewed(store: Store, user: str, key: str, lock: timedelta) -> AsyncIterator[None]:
    """Keep the claim on ``(user, key)`` locked while the block runs.

    A task moves ``locked_until`` to ``now() + lock`` every ``lock / 3``, each time in a
    short transaction of its own (never the operation's: it is started before any
    ``store.unit()``), and is stopped — between two renewals, never mid-statement — when
    the block ends. A renewal that fails (the database away for a moment) is logged and
    tried again at the next tick; the claim then still holds until its last expiry."""
    stop = asyncio.Event()
    renewal = asyncio.create_task(_renew_until(stop, store, user, key, lock),
                                  name=f"idempotency-renewal:{user}")
    try:
        yield
    finally:
        stop.set()
        await renewal


async def _renew_until(
    stop: asyncio.Event, store: Store, user: str, key: str, lock: timedelta
) -> None:
    interval = lock.total_seconds() / 3
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        if stop.is_set():
            return
        try:
            async with store.tx() as tx:
                await tx.idempotency.renew(user, key, lock=lock)
        except (StoreUnavailable, asyncpg.PostgresError, OSError) as exc:
            _log.warning("idempotency.renewal_failed", error=type(exc).__name__)


async def _claim(
    store: Store, user: str, key: str, digest: str, lock: timedelta
) -> Response[bytes] | None:
    async with store.tx() as tx:
        if await tx.idempotency.insert(user, key, digest, lock=lock, ttl=TTL):
            return None
        row = await tx.idempotency.lock(user, key)
        if row is None and await tx.idempotency.insert(user, key, digest, lock=lock, ttl=TTL):
            return None  # released or swept between the two statements: claimed now
        if row is None:
            raise _in_flight()
        if row.expired or (row.status == "in_flight" and not row.locked
                           and row.request_hash == digest):
            await tx.idempotency.retake(user, key, digest, lock=lock, ttl=TTL)
            return None
        if row.request_hash != digest:
            raise Problem(
                422,
                "this Idempotency-Key was already used with a different request body",
                type_="https://devteam.dev/problems/idempotency-key-reused",
            )
        if row.status == "in_flight":
            raise _in_flight()
        replay_headers = dict(row.response_headers or {})
        replay_headers["Idempotent-Replayed"] = "true"
        return Response(
            content=row.response_body or b"",
            status_code=int(row.response_status or 200),
            headers=replay_headers,
            media_type=replay_headers.pop("content-type", "application/json"),
        )


def _in_flight() -> Problem:
    return Problem(
        409,
        "a request with this Idempotency-Key is still being processed",
        type_="https://devteam.dev/problems/idempotency-in-flight",
        headers={"Retry-After": "1"},
    )


async def _finish(store: Store, user: str, key: str, response: Response[bytes]) -> None:
    """Store the response (in the unit's transaction when one is open)."""
    body = response.content if isinstance(response.content, bytes) else b""
    headers = {k: v for k, v in response.headers.items() if k.lower() in _REPLAY_HEADERS}
    headers["content-type"] = response.media_type or "application/json"
    async with store.tx() as tx:
        await tx.idempotency.finish(user, key, response.status_code or 200, headers, body)


async def _release(store: Store, user: str, key: str) -> None:
    async with store.tx() as tx:
        await tx.idempotency.release(user, key)


async def sweep(store: Store) -> int:
    """Delete expired keys (run periodically by the gateway)."""
    async with store.tx() as tx:
        return await tx.idempotency.sweep()
