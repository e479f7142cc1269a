"""The gateway's metrics: ``GET /metrics`` (no token) and the request counter around the
whole application (``pipeline.metrics`` defines every metric)."""

from __future__ import annotations

import time
from typing import Any

from litestar import Litestar, Response, get
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from pipeline import metrics


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics_endpoint() -> Response[bytes]:
    """Prometheus text exposition of this gateway (all its processes under ``--workers``)."""
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def instrument(app: Litestar) -> None:
    """Count every HTTP request by method, route template and status, and time it.

    Wraps the application's ASGI handler, outside routing, so the router's own 404 and 405
    are counted too (as route ``<unmatched>``): a path never becomes a label."""
    app.asgi_handler = _measured(app.asgi_handler)


def _measured(inner: ASGIApp) -> ASGIApp:
    # the labelled children by (method label, route template, status): prometheus-client's
    # labels() validates and locks on every call; the keys are bounded as the labels are
    children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def labelled(method: str, route: str, status: int) -> tuple[Any, Any]:
        key = (method, route, status)
        pair = children.get(key)
        if pair is None:
            pair = children[key] = (metrics.HTTP_REQUESTS.labels(method, route, str(status)),
                                    metrics.HTTP_DURATION.labels(method, route))
        return pair

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await inner(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        streaming = False

        async def observe(message: Message) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = int(message["status"])
                streaming = any(k == b"content-type" and v.startswith(b"text/event-stream")
                                for k, v in message.get("headers", []))
            await send(message)

        try:
            await inner(scope, receive, observe)
        finally:
            route = str(scope.get("path_template") or metrics.UNMATCHED)
            method = str(scope.get("method", ""))
            method = method if method in _METHODS else "OTHER"
            requests, duration = labelled(method, route, status)
            requests.inc()
            if not streaming:
                duration.observe(time.perf_counter() - started)

    return handler
