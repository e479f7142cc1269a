"""``create_app()``: the Litestar application, built from settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.exceptions import HTTPException, ValidationException

from gateway import idempotency
from gateway.allow import allow_middleware
from gateway.asyncapi import asyncapi_json
from gateway.auth import Authenticator
from gateway.coalesce import Coalesced
from gateway.correlation import correlation_middleware
from gateway.fanout import Hub
from gateway.http import NEEDS_TOKEN, admit
from gateway.limits import header_limit_middleware
from gateway.metrics import instrument, metrics_endpoint
from gateway.openapi import StrictStructSchemaPlugin, finish_document, openapi_config
from gateway.problems import (
    Problem,
    on_http,
    on_problem,
    on_unavailable,
    on_unexpected,
    on_validation,
)
from gateway.routes import (
    automation,
    core,
    dashboard,
    events,
    execution_detail,
    executions,
    health,
    repository,
    stream,
    usage,
)
from pipeline import metrics
from pipeline.db import Store, StoreUnavailable
from pipeline.services import Services
from pipeline.store.executions import StatusRow, warm_status_reads
from runner.logging import configure_logging
from runner.settings import Settings, get_settings

log = structlog.get_logger("devteam.gateway")

SWEEP_SECONDS = 600


def _status_reader(store: Store) -> Callable[[list[str]], Awaitable[dict[str, StatusRow]]]:
    """The status reads of the requests of one turn of the loop: one statement."""

    async def read(project_ids: list[str]) -> dict[str, StatusRow]:
        async with store.reads() as q:
            return await q.executions.statuses(project_ids)

    return read


def create_app(settings: Settings | None = None, *, store: Store | None = None,
               on_started: Callable[[], None] | None = None) -> Litestar:
    """The app; ``on_started`` runs once its start-up is done, before it serves."""
    settings = settings or get_settings()
    configure_logging(settings, process="gateway")

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # the status poll is the hot read: prepared when a connection opens, planned
        # once per connection (``Store``'s ``warm`` and ``generic_plans``)
        app.state.store = store or Store.from_settings(settings, warm=warm_status_reads,
                                                       generic_plans=True)
        app.state.services = Services(settings, app.state.store)
        app.state.statuses = Coalesced(_status_reader(app.state.store))
        app.state.hub = Hub(settings)
        await app.state.hub.start()
        sweeper = asyncio.create_task(_sweep_keys(app.state.store))
        warm = asyncio.create_task(health.warm_up(settings))
        if on_started is not None:
            on_started()
        try:
            yield
        finally:
            for task in (sweeper, warm):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await health.stop_background()
            await app.state.statuses.close()
            await app.state.hub.stop()
            if store is None:
                await app.state.store.close()
            metrics.process_exiting()

    api = Router(
        path="/",
        route_handlers=[
            *events.handlers,
            *core.handlers,
            *automation.handlers,
            *repository.handlers,
            *executions.handlers,
            *execution_detail.handlers,
            *usage.handlers,
        ],
        opt={NEEDS_TOKEN: True},
    )
    route_handlers: list[Any] = [
        api,
        health.health,
        health.live,
        asyncapi_json,
        *stream.handlers,
        *dashboard.handlers,
    ]
    if settings.metrics.enabled and not settings.metrics.address:
        route_handlers.append(metrics_endpoint)
    cors = (
        CORSConfig(allow_origins=[o.strip() for o in settings.gateway.cors_origins.split(",")])
        if settings.gateway.cors_origins
        else None
    )
    app = Litestar(
        route_handlers=route_handlers,
        lifespan=[lifespan],
        middleware=[header_limit_middleware, correlation_middleware, allow_middleware],
        before_request=admit,
        exception_handlers={
            Problem: on_problem,
            ValidationException: on_validation,
            HTTPException: on_http,
            StoreUnavailable: on_unavailable,
            Exception: on_unexpected,
        },
        request_max_body_size=settings.gateway.max_body_bytes,
        cors_config=cors,
        openapi_config=openapi_config(),
        plugins=[StrictStructSchemaPlugin()],
        debug=False,
        logging_config=None,
    )
    finish_document(app, NEEDS_TOKEN)
    app.state.settings = settings
    app.state.auth = Authenticator(settings)
    if settings.metrics.enabled:
        instrument(app)
    return app


async def _sweep_keys(store: Store) -> None:
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        try:
            removed = await idempotency.sweep(store)
            if removed:
                log.info("idempotency.swept", removed=removed)
        except Exception as exc:  # noqa: BLE001 - the sweeper must outlive a database blip
            log.warning("idempotency.sweep_failed", error=type(exc).__name__)
