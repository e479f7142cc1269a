"""``GET /``: the dashboard page, and ``GET /static/{name}``: its script, style and icon.

The page is plain HTML, CSS and one script, all served from ``gateway/static`` (no build
step, nothing from a CDN). It is locked down with a strict Content-Security-Policy (script,
style and connections from this origin only, no inline code, no framing) and
``Referrer-Policy: no-referrer``.

Where the token goes: the page reads it from its form, from ``localStorage`` or once from
``?token=`` (then removes it from the address bar at once and keeps it in
``localStorage``). It is sent only in the ``Authorization`` header of API calls and in the
WebSocket's ``?token=`` query (browsers cannot set headers on a WebSocket); the gateway
does not log request URLs (uvicorn's access log is off), and the page never logs it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from litestar import Response, get
from litestar.params import FromPath

from gateway.problems import Problem

STATIC = Path(__file__).resolve().parent.parent / "static"

# Only these files are served: a fixed list, so no path ever reaches the filesystem.
FILES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


@cache
def _read(name: str) -> bytes:
    return (STATIC / name).read_bytes()


@get("/", include_in_schema=False, name="dashboard")
async def index() -> Response[bytes]:
    """The dashboard page (no secrets in it; it asks for a token itself)."""
    return Response(
        content=_read("index.html"),
        media_type="text/html; charset=utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
    )


@get("/static/{name:str}", include_in_schema=False, name="dashboard-static")
async def static(name: FromPath[str]) -> Response[bytes]:
    """One of the dashboard's files; anything else is 404."""
    media_type = FILES.get(name)
    if media_type is None:
        raise Problem(404, "no such file")
    return Response(
        content=_read(name),
        media_type=media_type,
        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
    )


handlers = [index, static]
