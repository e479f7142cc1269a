"""Commands for the relay: written in the caller's transaction, dispatched after commit.

A command names an actor and a stage-run key ``(execution, task, stage, pass, attempt)``; the
Dramatiq message carries only the command's id (which is also the message id), so a
worker always reads the command from the table and a duplicate message is harmless.
"""

from __future__ import annotations

import uuid

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pipeline.lifecycle import Stage
from pipeline.store import outbox as rows
from pipeline.store.outbox import NewCommand
from pipeline.store.pg import as_tx
from pipeline.store.port import Tx

OUTBOX_CHANNEL = rows.OUTBOX_CHANNEL
QUEUE = "devteam_stages"


class StageCommand(msgspec.Struct, frozen=True, kw_only=True):
    """The stage-run key a command asks a worker to run; ``task_id`` is "" for
    execution-level stages (INIT, FINALIZE)."""

    execution_id: str
    stage: str
    task_id: str = ""
    pass_no: int = 1
    """Which selection of the task this is (1 unless the task came back)."""
    attempt: int = 1
    outcome: str | None = None
    """For FINALIZE: the status the execution ends in."""

    @property
    def key(self) -> tuple[str, str, str, int, int]:
        return (self.execution_id, self.task_id, self.stage, self.pass_no, self.attempt)


async def enqueue(
    db: AsyncSession | Tx,
    command: StageCommand,
    *,
    customer_id: str,
    correlation_id: str,
    delay_seconds: float = 0.0,
) -> int:
    """Insert a command and wake the relay (once per transaction; duplicates coalesce)."""
    tx = await as_tx(db)
    return await tx.outbox.enqueue(new_command(
        command, customer_id=customer_id, correlation_id=correlation_id,
        delay_seconds=delay_seconds))


def new_command(
    command: StageCommand, *, customer_id: str, correlation_id: str, delay_seconds: float = 0.0
) -> NewCommand:
    """The outbox row of ``command``: its actor by stage, the command as payload."""
    return NewCommand(
        execution_id=uuid.UUID(command.execution_id),
        customer_id=customer_id,
        actor=Stage(command.stage).actor_name,
        payload=msgspec.to_builtins(command),
        correlation_id=correlation_id,
        delay_seconds=delay_seconds,
    )


async def load(session: AsyncSession, command_id: int) -> tuple[StageCommand, str, str] | None:
    """``(command, customer_id, correlation_id)`` of a stored command, or None."""
    row = (
        await session.execute(
            text("SELECT payload, customer_id, correlation_id FROM outbox WHERE id = :id"),
            {"id": command_id},
        )
    ).one_or_none()
    if row is None:
        return None
    return msgspec.convert(row[0], StageCommand), str(row[1]), str(row[2])


async def complete(session: AsyncSession, command_id: int) -> None:
    """Mark a command handled (its stage finished, or it was a duplicate of a finished one)."""
    await session.execute(
        text("UPDATE outbox SET completed_at = now() WHERE id = :id AND completed_at IS NULL"),
        {"id": command_id},
    )


_CLAIM = text(
    """
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
    WHERE r.turn <= :per_customer
    ORDER BY r.turn, o.id
    LIMIT :batch
    FOR UPDATE OF o SKIP LOCKED
    """
)


async def claim_batch(
    session: AsyncSession, *, per_customer: int, batch: int = 100
) -> list[tuple[int, str]]:
    """Lock up to ``batch`` undispatched commands, round-robin between customers, never
    letting one customer have more than ``per_customer`` in flight. Returns ``(id, actor)``.

    Relays serialise on an advisory lock so the in-flight counts they read are exact; a
    relay that cannot take it returns nothing (another relay is dispatching right now).
    """
    got = (
        await session.execute(text("SELECT pg_try_advisory_xact_lock(hashtext('devteam-relay'))"))
    ).scalar_one()
    if not got:
        return []
    rows = (await session.execute(_CLAIM, {"per_customer": per_customer, "batch": batch})).all()
    return [(int(r[0]), str(r[1])) for r in rows]


async def mark_dispatched(session: AsyncSession, ids: list[int]) -> None:
    await session.execute(
        text(
            "UPDATE outbox SET dispatched_at = clock_timestamp(), "
            "dispatch_count = dispatch_count + 1 WHERE id = ANY(:ids)"
        ),
        {"ids": ids},
    )


async def requeue_stale(session: AsyncSession, *, grace_seconds: float) -> list[int]:
    """Make dispatched-but-unfinished commands dispatchable again when no worker holds a
    live claim on their stage run: the worker died (its lease expired) or the message was
    lost (never claimed within the grace period). Duplicates are harmless by design."""
    rows = (
        await session.execute(
            text(
                """
                UPDATE outbox o SET dispatched_at = NULL, available_at = now()
                WHERE o.dispatched_at IS NOT NULL AND o.completed_at IS NULL
                  AND (
                    -- the worker that claimed it stopped renewing its lease
                    EXISTS (
                      SELECT 1 FROM stage_runs s
                      WHERE s.execution_id = (o.payload->>'execution_id')::uuid
                        AND s.task_id = o.payload->>'task_id'
                        AND s.stage = o.payload->>'stage'
                        AND s.pass_no = coalesce((o.payload->>'pass_no')::int, 1)
                        AND s.attempt = (o.payload->>'attempt')::int
                        AND s.status = 'running' AND s.lease_until <= now()
                        AND o.dispatched_at < s.lease_until)
                    -- or nobody holds a live claim long after it was sent (message lost)
                    OR (o.dispatched_at < now() - make_interval(secs => :grace)
                      AND NOT EXISTS (
                        SELECT 1 FROM stage_runs s
                        WHERE s.execution_id = (o.payload->>'execution_id')::uuid
                          AND s.task_id = o.payload->>'task_id'
                          AND s.stage = o.payload->>'stage'
                          AND s.pass_no = coalesce((o.payload->>'pass_no')::int, 1)
                        AND s.attempt = (o.payload->>'attempt')::int
                          AND s.status = 'running' AND s.lease_until > now())))
                RETURNING o.id
                """
            ),
            {"grace": grace_seconds},
        )
    ).all()
    return [int(r[0]) for r in rows]


class Fleet(msgspec.Struct, frozen=True, kw_only=True):
    """What the relays report as fleet gauges (``pipeline.metrics``)."""

    backlog: int
    oldest_age: float
    executions: dict[str, int]
    running: dict[str, int]
    waiting: dict[str, int]


_FLEET = text(
    """
    SELECT
      (SELECT count(*) FROM outbox WHERE dispatched_at IS NULL) AS backlog,
      (SELECT coalesce(extract(epoch FROM now() - min(available_at)), 0) FROM outbox
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
)


async def fleet(session: AsyncSession) -> Fleet:
    """Outbox backlog and the age of its oldest due command, executions by status, and
    sandbox slots held and waited for per customer — one snapshot."""
    row = (await session.execute(_FLEET)).one()
    return Fleet(backlog=int(row.backlog), oldest_age=float(row.oldest_age),
                 executions={str(k): int(v) for k, v in dict(row.executions).items()},
                 running={str(k): int(v) for k, v in dict(row.running).items()},
                 waiting={str(k): int(v) for k, v in dict(row.waiting).items()})
