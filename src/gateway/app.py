"""``create_app()``: the Litestar application, built from settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from gateway import idempotency
from gateway.auth import Authenticator
from gateway.correlation import correlation_middleware
from gateway.problems import Problem, on_http, on_problem, on_unexpected, on_validation
from gateway.fanout import Hub
from gateway.routes import automation, events, executions, health, stream
from pipeline.db import Store
from pipeline.services import Services
from runner.logging import configure_logging
from runner.settings import Settings, get_settings

log = structlog.get_logger("devteam.gateway")

SWEEP_SECONDS = 600


def create_app(settings: Settings | None = None, *, store: Store | None = None) -> Litestar:
    settings = settings or get_settings()
    configure_logging(settings, process="gateway")

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.store = store or Store.from_settings(settings)
        app.state.services = Services(settings, app.state.store)
        app.state.hub = Hub(settings)
        await app.state.hub.start()
        sweeper = asyncio.create_task(_sweep_keys(app.state.store))
        warm = asyncio.create_task(health.warm_up(settings))
        try:
            yield
        finally:
            for task in (sweeper, warm):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await app.state.hub.stop()
            if store is None:
                await app.state.store.close()

    route_handlers: list[Any] = [
        *events.handlers,
        *automation.handlers,
        *executions.handlers,
        health.health,
        *stream.handlers,
    ]
    cors = (
        CORSConfig(allow_origins=[o.strip() for o in settings.gateway.cors_origins.split(",")])
        if settings.gateway.cors_origins
        else None
    )
    app = Litestar(
        route_handlers=route_handlers,
        lifespan=[lifespan],
        middleware=[correlation_middleware],
        exception_handlers={
            Problem: on_problem,
            ValidationException: on_validation,
            HTTPException: on_http,
            Exception: on_unexpected,
        },
        request_max_body_size=settings.gateway.max_body_bytes,
        cors_config=cors,
        openapi_config=OpenAPIConfig(
            title="DevTeam Runner",
            version="1.0.0",
            description="Runs a repository's task list autonomously and streams every step.",
            path="/schema",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
            security=[{"bearer": []}],
        ),
        debug=False,
        logging_config=None,
    )
    app.state.settings = settings
    app.state.auth = Authenticator(settings)
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
