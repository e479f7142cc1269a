"""The reaper, run by every worker every few minutes with the live executions from Postgres.

Removes containers and volumes labelled ours whose execution has ended (or whose expiry
passed) and working copies older than the age limit; live executions are untouched. Then
keeps the dependency caches within their bounds (count per project, size per customer, age), and
releases the slot leases whose containers are gone (removed now, or behind the service's
back: see slots.py). Several workers reaping at once is harmless (removal is idempotent).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Collection

import structlog

from pipeline.db import Store
from pipeline.retention import prune_old_records
from pipeline.slots import vacate
from runner.sandbox import container_names, make_client
from runner.sandbox.cli import reap_once
from runner.settings import Settings
from runner.setup import DepsCache

log = structlog.get_logger("devteam.reaper")

INTERVAL_SECONDS = 300.0
FIRST_AFTER_SECONDS = 30.0


def live_executions(settings: Settings) -> set[str]:
    """Ids of executions that have not ended (queried fresh each pass)."""

    async def query() -> set[str]:
        store = Store.from_settings(settings, pool_size=1)
        try:
            async with store.reads() as tx:
                return {str(i) for i in await tx.executions.active_ids()}
        finally:
            await store.close()

    return asyncio.run(query())


def reap_caches(settings: Settings) -> list[str]:
    """Apply the dependency caches' bounds (``DEVTEAM_SETUP_CACHE_*``); removed volumes."""
    client = make_client(settings)
    try:
        box = settings.setup
        return DepsCache(
            client.api,
            max_bytes_per_customer=int(box.cache_max_gb * 1024**3),
            per_project=box.cache_per_project,
            max_age_seconds=box.cache_max_age_hours * 3600,
        ).reap()
    finally:
        client.close()


def release_vanished(settings: Settings) -> list[str]:
    """Release the slot leases whose containers the engine no longer has; their holders."""

    async def run(names: Callable[[], Collection[str]]) -> list[str]:
        store = Store.from_settings(settings, pool_size=1)
        try:
            return await vacate(store, names)
        finally:
            await store.close()

    client = make_client(settings)
    try:
        return asyncio.run(run(functools.partial(container_names, client.api)))
    finally:
        client.close()


def start_reaper(settings: Settings, stop: threading.Event) -> threading.Thread:
    """A daemon thread reaping until ``stop`` is set."""

    def loop() -> None:
        wait = FIRST_AFTER_SECONDS
        while not stop.wait(wait):
            wait = INTERVAL_SECONDS
            try:
                report = reap_once(settings, functools.partial(live_executions, settings))
                caches = reap_caches(settings)
                released = release_vanished(settings)
                if released:
                    log.info("reaper.released_slots", holders=released)
                if caches:
                    log.info("reaper.removed_caches", volumes=caches)
                if report.total:
                    log.info(
                        "reaper.removed",
                        containers=report.containers,
                        volumes=report.volumes,
                        workspaces=report.workspaces,
                    )
                if report.errors:  # what could not go now; the next pass tries again
                    log.warning("reaper.left", count=len(report.errors),
                                errors=report.errors[:20])
            except Exception as exc:  # noqa: BLE001 - the next pass tries again
                log.warning("reaper.failed", error=type(exc).__name__)
            try:
                pruned = prune_old_records(settings)
                if pruned.total:
                    log.info("reaper.pruned", notifications=pruned.notifications,
                             stage_runs=pruned.stage_runs, contexts=pruned.contexts)
            except Exception as exc:  # noqa: BLE001 - the next pass tries again
                log.warning("reaper.prune_failed", error=type(exc).__name__)

    thread = threading.Thread(target=loop, name="reaper", daemon=True)
    thread.start()
    return thread
