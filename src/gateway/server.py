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
        uvicorn.run(create_app(settings, on_started=settle_gc), **options)


def settle_gc() -> None:
    """Once the app has started (its lifespan's start-up: the store's engine and pool,
    the hub's connection), before it serves: what the process built to start (modules,
    the app: most of its objects) lives as long as it does, and is frozen out of the
    cyclic collector's reach, so a full collection scans only what connections and
    requests allocated since. With a thousand stream clients a full collection of
    everything paused the event loop (and every frame in flight) for hundreds of
    milliseconds.

    What the first requests build lives as long too (pool connections and their prepared
    statements, modules imported on first use, the routers' caches): about 15,000
    objects, and every full collection scanned them again. Under load CPython runs one
    every third of a second (at 6,500 status reads a second), and each paused every
    request in flight for about 4 ms. So the first full collection after start-up
    freezes what survived it too; the later ones take 0.1 to 0.6 ms."""
    gc.collect()
    gc.freeze()
    if settle_after_first_full not in gc.callbacks:
        gc.callbacks.append(settle_after_first_full)


class _Settled:
    done = False


def settle_after_first_full(phase: str, info: dict[str, Any]) -> None:
    """A ``gc`` callback: at the end of the first full collection, freeze the survivors.
    (Once only: later survivors may be garbage whose cycles only the collector frees.)"""
    if phase == "stop" and info.get("generation") == 2 and not _Settled.done:
        _Settled.done = True
        gc.freeze()


def app_factory() -> Any:
    settings = get_settings()
    DeadlineHttpProtocol.configure(settings)  # a worker process imports the class afresh
    return create_app(settings, on_started=settle_gc)
