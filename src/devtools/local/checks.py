"""What must answer before a terminal command starts an execution: Postgres (migrated),
Redis, the Docker engine with the sandbox image, and the model endpoint when it is on this
machine. Each problem is one line saying what is wrong and what to run, so a first run on
a machine that is not ready fails in a second instead of after the first stage's retries.
"""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit

import asyncpg
import redis

from devtools.local.errors import CommandError
from pipeline.db import asyncpg_dsn
from runner.errors import RunnerError
from runner.settings import Settings

TIMEOUT = 3.0
START_HINT = "start the local stack with `devteam services up`"


async def require_engines(settings: Settings, *, model: bool = True) -> None:
    """Raise CommandError naming the first thing that does not answer. With ``model`` the
    configured model endpoint is checked too (only when it is on this machine: a remote
    one may sit behind a proxy this check cannot see)."""
    await _postgres(settings)
    await asyncio.to_thread(_redis, settings)
    await asyncio.to_thread(_docker, settings)
    if model:
        await asyncio.to_thread(_model, settings)


async def _postgres(settings: Settings) -> None:
    where = settings.database.url.rsplit("@", 1)[-1]
    try:
        conn = await asyncpg.connect(asyncpg_dsn(settings.database.url), timeout=TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise CommandError(
            f"Postgres at {where} does not answer ({_why(exc)}); {START_HINT}"
        ) from None
    try:
        migrated = await conn.fetchval("SELECT to_regclass('executions') IS NOT NULL")
    finally:
        await conn.close()
    if not migrated:
        raise CommandError(
            f"the database at {where} has no DevTeam tables; run `.venv/bin/alembic upgrade head`"
            " (or `make migrate`)"
        )


def _redis(settings: Settings) -> None:
    client = redis.Redis.from_url(
        settings.redis.url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        where = settings.redis.url.rsplit("@", 1)[-1]
        raise CommandError(
            f"Redis at {where} does not answer ({_why(exc)}); {START_HINT}"
        ) from None
    finally:
        client.close()


def _docker(settings: Settings) -> None:
    from runner.sandbox import image_status
    from runner.sandbox.engine import make_client

    try:
        client = make_client(settings, timeout=int(TIMEOUT) + 2)
    except RunnerError as exc:
        raise CommandError(exc.message) from None
    try:
        ok, detail = image_status(client, settings)
    finally:
        client.close()
    if not ok:
        raise CommandError(f"sandbox image: {detail}")


def _model(settings: Settings) -> None:
    url = settings.model.api_base
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise CommandError(f"DEVTEAM_MODEL_API_BASE {url!r} is not a URL") from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        return
    try:
        socket.create_connection((host, port), timeout=TIMEOUT).close()
    except OSError:
        raise CommandError(
            f"no model answers at {url}: pass --model-script FILE to use the scripted model, "
            "or set DEVTEAM_MODEL_API_BASE (and DEVTEAM_MODEL_NAME, DEVTEAM_MODEL_API_KEY) "
            "to your model's endpoint"
        ) from None


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__
