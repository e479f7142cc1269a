"""``X-Correlation-Id``: accepted when well-formed, generated otherwise, echoed on every
response (errors included), and bound to every log line of the request.

Litestar runs app middleware around route handlers only, so the router's own 404 and 405
never pass through it; the problem handler adds the header to those itself (``ensure``).
"""

from __future__ import annotations

import os
import re
from typing import Any

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-correlation-id"
_VALID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}\Z")


def scope_header(scope: Scope, name: bytes) -> bytes | None:
    """The first header ``name`` (lower case, as ASGI servers give names), read from the
    scope without building Litestar's header mapping; None when absent."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def ensure(scope: Scope) -> str:
    """The request's correlation id: the client's when well-formed, else a new one; kept
    in the scope's state so every later reader (handlers, error handlers) sees the same."""
    state: dict[str, Any] = scope.setdefault("state", {})
    value = state.get("correlation_id")
    if not value:
        given = scope_header(scope, HEADER) or b""
        value = given.decode() if _VALID.match(given) else os.urandom(16).hex()
        state["correlation_id"] = value
    return str(value)


def correlation_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        value = ensure(scope)
        encoded = value.encode()

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != HEADER]
                headers.append((HEADER, encoded))
                message["headers"] = headers
            await send(message)

        # bind and reset, not ``bound_contextvars``, which copies the whole context to
        # look for a value to restore (a request task starts without one)
        tokens = structlog.contextvars.bind_contextvars(correlation_id=value)
        try:
            await app(scope, receive, send_with_header)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)

    return middleware
