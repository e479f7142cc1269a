"""``Allow`` lists every method of a path, on ``OPTIONS`` as on a 405.

Litestar answers ``OPTIONS`` with a handler made for the first route registered at a path
and keeps it when a later handler adds a method there: ``OPTIONS`` on
``/api/devteam/repository/tasks/{rest}`` said ``GET, OPTIONS`` while ``PUT`` was served
(and a 405 there said ``GET, OPTIONS, PUT``). This middleware writes the ``Allow`` of an
``OPTIONS`` answer from the matched route's own methods, the set a 405 uses.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send

_ALLOW = b"allow"


def allowed_methods(app: Litestar) -> dict[str, bytes]:
    """``{path template: b"GET, OPTIONS, PUT"}`` for every HTTP route of ``app``."""
    return {
        route.path_format: ", ".join(sorted(route.methods)).encode()
        for route in app.routes
        if isinstance(route, HTTPRoute)
    }


def allow_middleware(app: ASGIApp) -> ASGIApp:
    tables: dict[int, dict[str, bytes]] = {}

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "OPTIONS":
            await app(scope, receive, send)
            return
        litestar = Litestar.from_scope(scope)
        table = tables.get(id(litestar))
        if table is None:
            table = tables[id(litestar)] = allowed_methods(litestar)
        methods = table.get(str(scope.get("path_template", "")))

        async def send_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and methods is not None:
                headers = list(message.get("headers", []))
                if any(name.lower() == _ALLOW for name, _ in headers):
                    message["headers"] = [
                        (name, value) for name, value in headers if name.lower() != _ALLOW
                    ] + [(_ALLOW, methods)]
            await send(message)

        await app(scope, receive, send_allow)

    return middleware
