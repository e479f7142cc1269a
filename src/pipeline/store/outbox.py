"""The outbox: commands for the relay, written with the state change, sent after commit."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from pipeline.store.common import Conn, dumps, loads

OUTBOX_CHANNEL = "devteam_outbox"


class NewCommand(msgspec.Struct, frozen=True, kw_only=True):
    execution_id: uuid.UUID | None
    customer_id: str
    actor: str
    payload: dict[str, Any]
    correlation_id: str
    delay_seconds: float = 0.0


ENQUEUE = (
    "WITH c AS (INSERT INTO outbox (execution_id, customer_id, actor, payload, "
    "correlation_id, available_at) VALUES ($1, $2, $3, $4::jsonb, $5, "
    "now() + make_interval(secs => $6)) RETURNING id) "
    f"SELECT c.id, pg_notify('{OUTBOX_CHANNEL}', '') FROM c"
)


class CommandRow(msgspec.Struct, frozen=True, kw_only=True):
    payload: dict[str, Any]
    customer_id: str
    correlation_id: str


class Claimed(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    actor: str


class Fleet(msgspec.Struct, frozen=True, kw_only=True):
    """What the relays report as fleet gauges (``pipeline.metrics``)."""

    backlog: int
    oldest_age: float
    executions: dict[str, int]
    running: dict[str, int]
    waiting: dict[str, int]


LOAD = "SELECT payload, customer_id, correlation_id FROM outbox WHERE id = $1"
COMPLETE = "UPDATE outbox SET completed_at = now() WHERE id = $1 AND completed_at IS NULL"
RELAY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('devteam-relay'))"
CLAIM = """
    WITH inflight AS (
        SELECT customer_id, count(*) AS n FROM outbox
        WHERE dispatched_at IS NOT NULL AND completed_at IS NULL
        GROUP BY customer_id
    ), ranked AS (
        SELECT o.id,
               row_number() OVER (PARTITION BY o.customer_id ORDER BY o.id)
                 + coalesce(i.n, 0) AS turn
        FROM outbox o LEFT JOIN inflight i ON i.customer_id = o.customer_id
        WHERE o.dispatched_at IS NULL AND o.available_at <= now()
    )
    SELECT o.id, o.actor FROM outbox o JOIN ranked r ON r.id = o.id
    WHERE r.turn <= $1
    ORDER BY r.turn, o.id
    LIMIT $2
    FOR UPDATE OF o SKIP LOCKED
"""
MARK_DISPATCHED = (
    "UPDATE outbox SET dispatched_at = clock_timestamp(), "
    "dispatch_count = dispatch_count + 1 WHERE id = ANY($1::bigint[])"
)
_SAME_RUN = """
    s.execution_id = (o.payload->>'execution_id')::uuid
    AND s.task_id = o.payload->>'task_id'
    AND s.stage = o.payload->>'stage'
    AND s.pass_no = coalesce((o.payload->>'pass_no')::int, 1)
    AND s.attempt = (o.payload->>'attempt')::int
"""
REQUEUE_STALE = f"""
    UPDATE outbox o SET dispatched_at = NULL, available_at = now()
    WHERE o.dispatched_at IS NOT NULL AND o.completed_at IS NULL
      AND (
        -- the worker that claimed it stopped renewing its lease
        EXISTS (
          SELECT 1 FROM stage_runs s WHERE {_SAME_RUN}
            AND s.status = 'running' AND s.lease_until <= now()
            AND o.dispatched_at < s.lease_until)
        -- or nobody holds a live claim long after it was sent (message lost)
        OR (o.dispatched_at < now() - make_interval(secs => $1)
          AND NOT EXISTS (
            SELECT 1 FROM stage_runs s WHERE {_SAME_RUN}
              AND s.status = 'running' AND s.lease_until > now())))
    RETURNING o.id
"""
FLEET = """
    SELECT
      (SELECT count(*) FROM outbox WHERE dispatched_at IS NULL) AS backlog,
      (SELECT coalesce(extract(epoch FROM now() - min(available_at)), 0)::float8 FROM outbox
        WHERE dispatched_at IS NULL AND available_at <= now()) AS oldest_age,
      (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM
        (SELECT status, count(*) AS n FROM executions GROUP BY status) e) AS executions,
      (SELECT coalesce(jsonb_object_agg(customer_id, n), '{}') FROM
        (SELECT customer_id, count(*) AS n FROM sandbox_leases WHERE granted_at IS NOT NULL
         GROUP BY customer_id) r) AS running,
      (SELECT coalesce(jsonb_object_agg(customer_id, n), '{}') FROM
        (SELECT customer_id, count(*) AS n FROM sandbox_leases WHERE granted_at IS NULL
         AND alive_until >= now() GROUP BY customer_id) w) AS waiting
"""


class PgOutbox:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def enqueue(self, command: NewCommand) -> int:
        """Insert a command and wake the relay (NOTIFY coalesces within a transaction):
        one statement. Returns the command's id."""
        return int(await self.conn.fetchval(
            ENQUEUE, command.execution_id, command.customer_id, command.actor,
            dumps(command.payload), command.correlation_id, float(command.delay_seconds)))

    async def load(self, command_id: int) -> CommandRow | None:
        record = await self.conn.fetchrow(LOAD, command_id)
        if record is None:
            return None
        return CommandRow(payload=loads(record["payload"]), customer_id=record["customer_id"],
                          correlation_id=record["correlation_id"])

    async def complete(self, command_id: int) -> None:
        """Mark a command handled (a second time changes nothing)."""
        await self.conn.execute(COMPLETE, command_id)

    async def claim_batch(self, *, per_customer: int, batch: int) -> list[Claimed]:
        """Lock up to ``batch`` due undispatched commands, round-robin between customers,
        none past ``per_customer`` in flight; nothing when another relay holds the relay
        lock (taken for the transaction)."""
        if not await self.conn.fetchval(RELAY_LOCK):
            return []
        rows = await self.conn.fetch(CLAIM, per_customer, batch)
        return [Claimed(id=int(r["id"]), actor=r["actor"]) for r in rows]

    async def mark_dispatched(self, ids: list[int]) -> None:
        await self.conn.execute(MARK_DISPATCHED, ids)

    async def requeue_stale(self, *, grace_seconds: float) -> list[int]:
        """Dispatched, unfinished commands whose stage run's lease expired, or that nobody
        claimed within ``grace_seconds``: dispatchable again. Their ids."""
        return [int(r["id"]) for r in await self.conn.fetch(REQUEUE_STALE,
                                                             float(grace_seconds))]

    async def fleet(self) -> Fleet:
        r = await self.conn.fetchrow(FLEET)
        return Fleet(backlog=int(r["backlog"]), oldest_age=float(r["oldest_age"]),
                     executions={str(k): int(v) for k, v in loads(r["executions"]).items()},
                     running={str(k): int(v) for k, v in loads(r["running"]).items()},
                     waiting={str(k): int(v) for k, v in loads(r["waiting"]).items()})
