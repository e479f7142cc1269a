"""Container slots shared by every worker process, fair between customers (Postgres).

The runner's ``SlotLimiter`` port, on the ``sandbox_leases`` table: a waiter inserts a row;
under one advisory lock, waiting rows are granted in turn — the customer holding the
fewest slots first, then the oldest request — while the global and per-customer limits
allow. A slot is keyed by the container's name, so the worker that removes a container
releases its slot even if another worker created it; leases expire with the container's
TTL, so a crashed worker cannot hold slots forever.

The sandbox calls ``acquire``/``release`` from worker threads; the queries run on the
event loop that owns the database pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from sqlalchemy import text

from pipeline.db import Store
from runner.errors import TransientError
from runner.settings import Settings

T = TypeVar("T")
LOCK_KEY = "hashtext('devteam-sandbox-slots')"

_GRANT = text(
    """
    WITH held AS (
        SELECT customer_id, count(*) AS n FROM sandbox_leases
        WHERE granted_at IS NOT NULL GROUP BY customer_id
    ), waiting AS (
        SELECT l.id, l.customer_id,
               coalesce(h.n, 0) + row_number() OVER (
                   PARTITION BY l.customer_id ORDER BY l.requested_at, l.id) AS turn,
               l.requested_at
        FROM sandbox_leases l LEFT JOIN held h ON h.customer_id = l.customer_id
        WHERE l.granted_at IS NULL
    ), ranked AS (
        SELECT id, turn, row_number() OVER (ORDER BY turn, requested_at, id) AS place
        FROM waiting WHERE turn <= :per_customer
    )
    UPDATE sandbox_leases SET granted_at = now()
    WHERE id IN (
        SELECT id FROM ranked
        WHERE place <= :global - (SELECT count(*) FROM sandbox_leases WHERE granted_at IS NOT NULL)
    )
    """
)


class PgSlotLimiter:
    def __init__(self, settings: Settings, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.global_limit = settings.sandbox.max_containers
        self.per_customer = settings.sandbox.max_containers_per_customer
        self.ttl = settings.sandbox.container_ttl_seconds
        self.store = store
        self.loop = loop

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def acquire(self, customer_id: str, holder: str, timeout: float | None = None) -> None:
        """Wait for a slot (TransientError after ``timeout`` seconds); idempotent per holder."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._run(self._request(customer_id, holder))
        delay = 0.05
        while not self._run(self._grant(holder)):
            if deadline is not None and time.monotonic() >= deadline:
                self.release(holder)
                raise TransientError(
                    f"no sandbox slot for customer {customer_id} within {timeout:.0f}s",
                    details={"customer": customer_id},
                )
            time.sleep(delay)
            delay = min(1.0, delay * 2)

    def release(self, holder: str) -> None:
        self._run(self._release(holder))

    async def _request(self, customer_id: str, holder: str) -> None:
        async with self.store.transaction() as session:
            await session.execute(
                text(
                    "INSERT INTO sandbox_leases (customer_id, holder, expires_at) VALUES "
                    "(:c, :h, now() + make_interval(secs => :ttl)) ON CONFLICT (holder) "
                    "DO UPDATE SET expires_at = EXCLUDED.expires_at"
                ),
                {"c": customer_id, "h": holder, "ttl": self.ttl},
            )

    async def _grant(self, holder: str) -> bool:
        async with self.store.transaction() as session:
            await session.execute(text(f"SELECT pg_advisory_xact_lock({LOCK_KEY})"))
            await session.execute(text("DELETE FROM sandbox_leases WHERE expires_at < now()"))
            await session.execute(
                _GRANT, {"per_customer": self.per_customer, "global": self.global_limit}
            )
            granted = (
                await session.execute(
                    text("SELECT granted_at IS NOT NULL FROM sandbox_leases WHERE holder = :h"),
                    {"h": holder},
                )
            ).scalar_one_or_none()
        return bool(granted)

    async def _release(self, holder: str) -> None:
        async with self.store.transaction() as session:
            await session.execute(
                text("DELETE FROM sandbox_leases WHERE holder = :h"), {"h": holder}
            )
