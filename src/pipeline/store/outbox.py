"""The outbox: commands for the relay, written with the state change, sent after commit."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from pipeline.store.common import Conn, dumps

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


class PgOutbox:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def enqueue(self, command: NewCommand) -> int:
        """Insert a command and wake the relay (NOTIFY coalesces within a transaction):
        one statement. Returns the command's id."""
        return int(await self.conn.fetchval(
            ENQUEUE, command.execution_id, command.customer_id, command.actor,
            dumps(command.payload), command.correlation_id, float(command.delay_seconds)))
