"""Notifications: what clients see, with a per-execution ``seq`` and a global ``pos``.

See ``pipeline.stream`` for the ordering argument (``pos`` taken under the one-row
``stream_position`` lock held until commit, after the execution's row lock)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from pipeline.store.common import Conn, dumps

STREAM_CHANNEL = "devteam_stream"


class Appended(msgspec.Struct, frozen=True, kw_only=True):
    """Where appended notifications went: ``first_pos``/``first_seq`` of the first, the
    rest consecutive."""

    first_pos: int
    first_seq: int
    customer_id: str
    project_id: str
    created_at: datetime


BUMP_SEQ = (
    "UPDATE executions SET last_seq = last_seq + $2, updated_at = now(), "
    "last_update = coalesce($3::jsonb, last_update) "
    "WHERE id = $1 RETURNING last_seq, customer_id, project_id"
)
INSERT = (
    "WITH p AS (UPDATE stream_position SET pos = pos + $1 WHERE id = 1 RETURNING pos), "
    "ins AS (INSERT INTO notifications "
    "(pos, execution_id, seq, customer_id, project_id, type, payload, created_at) "
    "SELECT p.pos - $1 + f.ord, $2::uuid, $3::bigint + f.ord - 1, $4::text, $5::text, "
    "f.type, f.payload::jsonb, $6::timestamptz FROM p, "
    "unnest($7::text[], $8::text[]) WITH ORDINALITY AS f(type, payload, ord)) "
    f"SELECT p.pos, pg_notify('{STREAM_CHANNEL}', p.pos::text) FROM p"
)


class PgNotifications:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def append(
        self,
        execution_id: uuid.UUID,
        frames: list[tuple[str, dict[str, Any]]],
        *,
        created_at: datetime,
        last_update: Any = None,
    ) -> Appended:
        """Append ``(type, payload)`` rows for one execution; ``last_update`` (unless
        None) is remembered as the last ``execution-update`` sent. Two statements: the
        execution's ``seq`` (row lock), then positions, rows and NOTIFY."""
        n = len(frames)
        record = await self.conn.fetchrow(
            BUMP_SEQ, execution_id, n, None if last_update is None else dumps(last_update))
        if record is None:
            raise LookupError(f"no execution {execution_id}")
        last_seq, customer_id, project_id = int(record[0]), str(record[1]), str(record[2])
        first_seq = last_seq - n + 1
        last_pos = await self.conn.fetchval(
            INSERT, n, execution_id, first_seq, customer_id, project_id, created_at,
            [kind for kind, _ in frames], [dumps(payload) for _, payload in frames])
        return Appended(first_pos=int(last_pos) - n + 1, first_seq=first_seq,
                        customer_id=customer_id, project_id=project_id, created_at=created_at)
