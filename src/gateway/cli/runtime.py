"""``devteam serve|relay|worker|token``: the service's processes and a token minter."""

from __future__ import annotations

import asyncio
import json
import signal

import typer

from runner.settings import get_settings


def serve(
    host: str = typer.Option(None, help="Bind address (default DEVTEAM_GATEWAY_HOST)."),
    port: int = typer.Option(None, help="Port (default DEVTEAM_GATEWAY_PORT)."),
    workers: int = typer.Option(1, min=1, help="Gateway processes (each LISTENs for itself)."),
) -> None:
    """Run the gateway: the HTTP API, the live stream and the dashboard."""
    from devtools.localstack import register_process
    from gateway.server import serve as run

    settings = get_settings()
    unregister = register_process(settings, "gateway")
    try:
        run(settings, host=host, port=port, workers=workers)
    finally:
        unregister()


def relay() -> None:
    """Run the outbox relay: committed commands → Dramatiq messages (several may run)."""
    from devtools.localstack import register_process
    from pipeline.db import Store
    from pipeline.relay import Relay
    from runner.logging import configure_logging

    settings = get_settings()
    configure_logging(settings, process="relay")
    unregister = register_process(settings, "relay")

    if settings.metrics.enabled:
        from pipeline import metrics

        metrics.serve_port(settings.metrics.host, settings.metrics.relay_port, role="relay")

    async def main() -> None:
        store = Store.from_settings(settings, pool_size=4)
        relay = Relay(settings, store)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, relay.stop)
        try:
            await relay.run()
        finally:
            await store.close()

    try:
        asyncio.run(main())
    finally:
        unregister()


def worker(
    threads: int = typer.Option(None, min=1, help="Stages run at once (default from settings)."),
) -> None:
    """Run a stage worker (Dramatiq): SELECT → PREP → IMPLEMENT → VERIFY → … → DONE."""
    from devtools.localstack import register_process
    from pipeline.worker import run_worker

    settings = get_settings()
    unregister = register_process(settings, "worker")
    try:
        run_worker(settings, threads=threads)
    finally:
        unregister()


def token(
    sub: str = typer.Option(..., "--sub", help="User id (the token's subject)."),
    project: list[str] = typer.Option(..., "--project", help="customer/project or customer/*."),
    role: str = typer.Option("developer", help="developer, manager or admin."),
    ttl: int = typer.Option(3600, help="Lifetime in seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print {token} as JSON."),
) -> None:
    """Mint a development token signed with the configured key."""
    from gateway.auth import mint

    if role not in ("developer", "manager", "admin"):
        raise typer.BadParameter("role must be developer, manager or admin")
    value = mint(get_settings(), sub=sub, projects=list(project), role=role, ttl=ttl)
    print(json.dumps({"token": value}) if as_json else value)


def ping() -> None:
    """Exit 0 when Postgres and Redis answer within 3 s (container health checks)."""
    import redis

    from pipeline.db import asyncpg_dsn
    from pipeline.store.server import PgServer

    settings = get_settings()

    async def postgres() -> None:
        import asyncpg

        # a query answered, not only a connection accepted (as the gateway's /health)
        conn = await asyncpg.connect(asyncpg_dsn(settings.database.url), timeout=3)
        try:
            await asyncio.wait_for(PgServer(conn).ping(), 3)
        finally:
            await conn.close()

    try:
        asyncio.run(postgres())
        client = redis.Redis.from_url(settings.redis.url, socket_timeout=3,
                                      socket_connect_timeout=3)
        client.ping()
        client.close()
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"
        print(f"unhealthy: {type(exc).__name__}")
        raise typer.Exit(1) from None
    print("ok")
