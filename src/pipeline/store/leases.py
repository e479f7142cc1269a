"""Sandbox slot leases (``sandbox_leases``): the queries of ``pipeline.slots``.

A lease is requested (a waiting row), granted under the grant lock (the customer holding
the fewest slots first, then the oldest request, within the global and per-customer
limits), placed once its container exists, and released with it. ``pipeline.slots``
decides when; these are the statements.

The grant lock (``serialize``) is a Postgres advisory lock held to the end of the
transaction; the in-memory store runs one transaction at a time, which is the same
guarantee.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from pipeline.store.common import Conn


class LeaseWait(msgspec.Struct, frozen=True, kw_only=True):
    """A holder's waiting lease and where it stands in line."""

    holder: str
    customer_id: str
    requested_at: datetime
    seconds: float
    position: int
    """1 = next of its customer."""
    waiting: int
    customer_running: int
    running: int


class Vacated(msgspec.Struct, frozen=True):
    """A granted lease released because its container is gone."""

    holder: str
    customer_id: str


SERIALIZE = "SELECT pg_advisory_xact_lock(hashtext('devteam-sandbox-slots'))"

REQUEST = """
    INSERT INTO sandbox_leases (customer_id, holder, execution_id, expires_at, alive_until)
    VALUES ($1, $2, $3, now() + make_interval(secs => $4),
            now() + make_interval(secs => $6))
    ON CONFLICT (holder) DO UPDATE
      SET expires_at = EXCLUDED.expires_at,
          execution_id = coalesce(EXCLUDED.execution_id, sandbox_leases.execution_id),
          placed_at = NULL,
          alive_until = now() + make_interval(secs => CASE
              WHEN sandbox_leases.granted_at IS NULL THEN $5 ELSE $6 END)
"""

DROP_DEAD = (
    "DELETE FROM sandbox_leases WHERE expires_at < now() "
    "OR (granted_at IS NULL AND alive_until < now())"
)

GRANT = """
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
        FROM waiting WHERE turn <= $1
    )
    UPDATE sandbox_leases
    SET granted_at = now(), alive_until = now() + make_interval(secs => $3)
    WHERE id IN (
        SELECT id FROM ranked
        WHERE place <= $2 - (SELECT count(*) FROM sandbox_leases WHERE granted_at IS NOT NULL)
    )
"""

GRANTED = "SELECT granted_at IS NOT NULL FROM sandbox_leases WHERE holder = $1"

WAIT = """
    WITH mine AS (
        SELECT id, holder, customer_id, requested_at FROM sandbox_leases
        WHERE holder = $1 AND granted_at IS NULL AND alive_until >= now()
        ORDER BY requested_at, id LIMIT 1
    )
    SELECT m.holder, m.customer_id, m.requested_at,
           extract(epoch FROM now() - m.requested_at)::float8 AS seconds,
           (SELECT count(*) FROM sandbox_leases w
             WHERE w.granted_at IS NULL AND w.alive_until >= now()
               AND w.customer_id = m.customer_id
               AND (w.requested_at, w.id) < (m.requested_at, m.id)) + 1 AS position,
           (SELECT count(*) FROM sandbox_leases
             WHERE granted_at IS NULL AND alive_until >= now()) AS waiting,
           (SELECT count(*) FROM sandbox_leases
             WHERE granted_at IS NOT NULL AND customer_id = m.customer_id) AS customer_running,
           (SELECT count(*) FROM sandbox_leases WHERE granted_at IS NOT NULL) AS running
    FROM mine m
"""

PLACED = "UPDATE sandbox_leases SET placed_at = now() WHERE holder = $1"

RELEASE = "DELETE FROM sandbox_leases WHERE holder = $1"

NOW = "SELECT now()"

VACATE = """
    DELETE FROM sandbox_leases
    WHERE granted_at IS NOT NULL AND NOT (holder = ANY($1::text[]))
      AND ((placed_at IS NOT NULL AND placed_at < $2) OR alive_until < $2)
    RETURNING holder, customer_id
"""
"""Granted leases whose container the engine no longer has: placed before the engine was
listed, or not placed and their creator's allowance gone by then."""


def _count(status: str) -> int:
    """Rows of an asyncpg command status (``DELETE 42``, ``UPDATE 3``)."""
    return int(status.rsplit(" ", 1)[-1])


class PgLeases:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def serialize(self) -> None:
        await self.conn.execute(SERIALIZE)

    async def request(self, customer_id: str, holder: str, execution_id: str | None, *,
                      ttl: float, alive: float, create: float) -> None:
        await self.conn.execute(REQUEST, customer_id, holder, execution_id, float(ttl),
                                float(alive), float(create))

    async def drop_dead(self) -> int:
        return _count(await self.conn.execute(DROP_DEAD))

    async def grant(self, *, per_customer: int, global_limit: int, create: float) -> int:
        return _count(await self.conn.execute(GRANT, per_customer, global_limit,
                                              float(create)))

    async def granted(self, holder: str) -> bool:
        return bool(await self.conn.fetchval(GRANTED, holder))

    async def wait(self, holder: str) -> LeaseWait | None:
        r = await self.conn.fetchrow(WAIT, holder)
        if r is None:
            return None
        return LeaseWait(holder=r["holder"], customer_id=r["customer_id"],
                         requested_at=r["requested_at"], seconds=float(r["seconds"]),
                         position=int(r["position"]), waiting=int(r["waiting"]),
                         customer_running=int(r["customer_running"]), running=int(r["running"]))

    async def placed(self, holder: str) -> None:
        await self.conn.execute(PLACED, holder)

    async def release(self, holder: str) -> None:
        await self.conn.execute(RELEASE, holder)

    async def clock(self) -> datetime:
        value: datetime = await self.conn.fetchval(NOW)
        return value

    async def vacate(self, existing: list[str], listed_at: datetime) -> list[Vacated]:
        rows = await self.conn.fetch(VACATE, existing, listed_at)
        return [Vacated(r["holder"], r["customer_id"]) for r in rows]
