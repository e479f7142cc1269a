"""``devteam serve``: the gateway under uvicorn (HTTP/1.1, WebSockets with pings), with
deadlines on reading each request (:mod:`gateway.protocol`)."""

from __future__ import annotations

import gc
from typing import Any

import uvicorn

from gateway.app import create_app
from gateway.protocol import DeadlineHttpProtocol
from pipeline import metrics
from runner.settings import Settings, get_settings


def serve(settings: Settings, *, host: str | None = None, port: int | None = None,
          workers: int = 1) -> None:
    """Run until SIGINT/SIGTERM. With ``workers`` > 1 uvicorn forks processes; each is a
    whole gateway with its own LISTEN connection (gateways share nothing but Postgres)."""
    DeadlineHttpProtocol.configure(settings)
    options: dict[str, Any] = {
        "http": DeadlineHttpProtocol,
        "host": host or settings.gateway.host,
        "port": port or settings.gateway.port,
        "log_config": None,
        "access_log": False,
        "ws_ping_interval": settings.gateway.ws_ping_seconds,
        "ws_ping_timeout": settings.gateway.ws_ping_seconds,
        "ws_max_size": 1024 * 1024,
        "timeout_graceful_shutdown": 5,
        "lifespan": "on",
    }
    if settings.metrics.enabled and workers > 1:
        # Spawned workers inherit the variable and write their values to files there.
        metrics.prepare_multiprocess(settings, f"gateway-{options['port']}")
    if settings.metrics.enabled and settings.metrics.address:
        host_, port_ = metrics.parse_address(settings.metrics.address)
        metrics.serve_port(host_, port_, role="gateway")
    if workers > 1:
        uvicorn.run("gateway.server:app_factory", factory=True, workers=workers, **options)
    else:
        app = create_app(settings)
        settle_gc()
        uvicorn.run(app, **options)


def settle_gc() -> None:
    """What the process built to start (modules, the app: most of its objects) lives as
    long as it does: frozen out of the cyclic collector's reach, so a full collection
    scans only what connections and requests allocated since. With a thousand stream
    clients a full collection of everything paused the event loop (and every frame in
    flight) for hundreds of milliseconds."""
    gc.collect()
    gc.freeze()


def app_factory() -> Any:
    settings = get_settings()
    DeadlineHttpProtocol.configure(settings)  # a worker process imports the class afresh
    app = create_app(settings)
    settle_gc()
    return app
