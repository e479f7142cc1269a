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


APPEND = (
    # The execution's row is locked (x) before the stream position's (p): p's UPDATE is
    # gated on x, so x runs first, as when they were two statements.
    "WITH x AS (UPDATE executions SET last_seq = last_seq + $2, updated_at = now(), "
    "last_update = coalesce($3::jsonb, last_update) WHERE id = $1 "
    "RETURNING last_seq, customer_id, project_id), "
    "p AS (UPDATE stream_position SET pos = pos + $2 WHERE id = 1 "
    "AND EXISTS (SELECT FROM x) RETURNING pos), "
    "ins AS (INSERT INTO notifications "
    "(pos, execution_id, seq, customer_id, project_id, type, payload, created_at) "
    "SELECT p.pos - $2 + f.ord, $1, x.last_seq - $2 + f.ord, x.customer_id, x.project_id, "
    "f.type, f.payload::jsonb, $4::timestamptz FROM p, x, "
    "unnest($5::text[], $6::text[]) WITH ORDINALITY AS f(type, payload, ord)) "
    "SELECT p.pos AS last_pos, x.last_seq, x.customer_id, x.project_id, "
    f"pg_notify('{STREAM_CHANNEL}', p.pos::text) FROM p, x"
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
        None) is remembered as the last ``execution-update`` sent. One statement: the
        execution's ``seq`` (its row locked first), positions, rows and NOTIFY."""
        n = len(frames)
        record = await self.conn.fetchrow(
            APPEND, execution_id, n, None if last_update is None else dumps(last_update),
            created_at, [kind for kind, _ in frames], [dumps(payload) for _, payload in frames])
        if record is None:
            raise LookupError(f"no execution {execution_id}")
        return Appended(first_pos=int(record["last_pos"]) - n + 1,
                        first_seq=int(record["last_seq"]) - n + 1,
                        customer_id=record["customer_id"], project_id=record["project_id"],
                        created_at=created_at)
