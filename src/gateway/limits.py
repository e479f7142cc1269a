"""A limit on request headers, checked before anything else looks at the request.

uvicorn (with httptools) accepts a header block of any size, and nothing in the API needs
more than a few kilobytes of it. A request whose headers add up to more than
``MAX_HEADER_BYTES`` is answered 431 (problem details) before authentication, routing work
or logging touch its values; a WebSocket handshake that large is refused (the server
answers the handshake with 403). Like every app middleware it wraps matched routes only:
an unknown path is a 404 whatever its headers.
"""

from __future__ import annotations

import uuid

import msgspec
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

MAX_HEADER_BYTES = 64 * 1024
"""Largest header block (names, values and separators) a request may send."""


def header_size(scope: Scope) -> int:
    """Bytes of the request's header block, roughly as sent (``name: value\\r\\n``)."""
    return sum(len(name) + len(value) + 4 for name, value in scope.get("headers", []))


def header_limit_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in (ScopeType.HTTP, ScopeType.WEBSOCKET) or (
            header_size(scope) <= MAX_HEADER_BYTES
        ):
            await app(scope, receive, send)
            return
        if kind == ScopeType.WEBSOCKET:
            await send({"type": "websocket.close", "code": 1008, "reason": ""})
            return
        correlation = uuid.uuid4().hex
        body = msgspec.json.encode(
            {
                "type": "https://devteam.dev/problems/431",
                "title": "Request Header Fields Too Large",
                "status": 431,
                "detail": f"request headers are larger than {MAX_HEADER_BYTES} bytes",
                "instance": scope.get("path", ""),
                "correlationId": correlation,
            }
        )
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 431,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-correlation-id", correlation.encode()),
            ],
        }
        await send(start)
        end: HTTPResponseBodyEvent = {
            "type": "http.response.body",
            "body": body,
            "more_body": False,
        }
        await send(end)

    return middleware
