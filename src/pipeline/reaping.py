"""The reaper, run by every worker every few minutes with the live executions from Postgres.

Removes containers and volumes labelled ours whose execution has ended (or whose expiry
passed) and working copies older than the age limit; live executions are untouched. Several
workers reaping at once is harmless (removal is idempotent).
"""

from __future__ import annotations

import asyncio
import functools
import threading

import asyncpg
import structlog

from pipeline.db import asyncpg_dsn
from pipeline.lifecycle import ACTIVE
from runner.sandbox.cli import reap_once
from runner.settings import Settings

log = structlog.get_logger("devteam.reaper")

INTERVAL_SECONDS = 300.0
FIRST_AFTER_SECONDS = 30.0


def live_executions(settings: Settings) -> set[str]:
    """Ids of executions that have not ended (queried fresh each pass)."""

    async def query() -> set[str]:
        conn = await asyncpg.connect(asyncpg_dsn(settings.database.url), timeout=5)
        try:
            rows = await conn.fetch(
                "SELECT id::text FROM executions WHERE status = ANY($1::text[])",
                [s.value for s in ACTIVE],
            )
            return {r[0] for r in rows}
        finally:
            await conn.close()

    return asyncio.run(query())


def start_reaper(settings: Settings, stop: threading.Event) -> threading.Thread:
    """A daemon thread reaping until ``stop`` is set."""

    def loop() -> None:
        wait = FIRST_AFTER_SECONDS
        while not stop.wait(wait):
            wait = INTERVAL_SECONDS
            try:
                report = reap_once(settings, functools.partial(live_executions, settings))
                if report.total:
                    log.info(
                        "reaper.removed",
                        containers=report.containers,
                        volumes=report.volumes,
                        workspaces=report.workspaces,
                    )
            except Exception as exc:  # noqa: BLE001 - the next pass tries again
                log.warning("reaper.failed", error=type(exc).__name__)

    thread = threading.Thread(target=loop, name="reaper", daemon=True)
    thread.start()
    return thread
