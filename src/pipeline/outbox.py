"""Commands for the relay: written in the caller's transaction, dispatched after commit.

A command names an actor and a stage-run key ``(execution, task, stage, pass, attempt)``; the
Dramatiq message carries only the command's id (which is also the message id), so a
worker always reads the command from the table and a duplicate message is harmless.
"""

from __future__ import annotations

import uuid

import msgspec

from pipeline.lifecycle import Stage
from pipeline.store import outbox as rows
from pipeline.store.outbox import NewCommand
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
    db: Tx,
    command: StageCommand,
    *,
    customer_id: str,
    correlation_id: str,
    delay_seconds: float = 0.0,
) -> int:
    """Insert a command and wake the relay (once per transaction; duplicates coalesce)."""
    return await db.outbox.enqueue(new_command(
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


async def load(
    db: Tx, command_id: int
) -> tuple[StageCommand, str, str] | None:
    """``(command, customer_id, correlation_id)`` of a stored command, or None."""
    row = await db.outbox.load(command_id)
    if row is None:
        return None
    return msgspec.convert(row.payload, StageCommand), row.customer_id, row.correlation_id


async def complete(db: Tx, command_id: int) -> None:
    """Mark a command handled (its stage finished, or it was a duplicate of a finished one)."""
    await db.outbox.complete(command_id)


async def claim_batch(
    db: Tx, *, per_customer: int, batch: int = 100
) -> list[tuple[int, str]]:
    """Lock up to ``batch`` undispatched commands, round-robin between customers, never
    letting one customer have more than ``per_customer`` in flight. Returns ``(id, actor)``.

    Relays serialise on an advisory lock so the in-flight counts they read are exact; a
    relay that cannot take it returns nothing (another relay is dispatching right now).
    """
    claimed = await db.outbox.claim_batch(per_customer=per_customer,
                                                         batch=batch)
    return [(c.id, c.actor) for c in claimed]


async def mark_dispatched(db: Tx, ids: list[int]) -> None:
    await db.outbox.mark_dispatched(ids)


async def requeue_stale(db: Tx, *, grace_seconds: float) -> list[int]:
    """Make dispatched-but-unfinished commands dispatchable again when no worker holds a
    live claim on their stage run: the worker died (its lease expired) or the message was
    lost (never claimed within the grace period). Duplicates are harmless by design."""
    return await db.outbox.requeue_stale(grace_seconds=grace_seconds)


Fleet = rows.Fleet


async def fleet(db: Tx) -> Fleet:
    """Outbox backlog and the age of its oldest due command, executions by status, and
    sandbox slots held and waited for per customer — one snapshot."""
    return await db.outbox.fleet()
