"""Retention's statements: old notifications, stage runs and stage outputs, in batches.

``pipeline.retention`` decides what is old and in which order the batches run (the
watermark ``stream_position.pruned_pos`` committed before the notifications under it
go); these are its queries, each one batch.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from pipeline.store.common import Conn, dumps, loads


class OldContext(msgspec.Struct, frozen=True):
    """An ended execution's event whose ``task_context`` still holds stage outputs."""

    event_id: uuid.UUID
    context: dict[str, Any]


WATERMARK = "SELECT pruned_pos FROM stream_position WHERE id = 1"

OLD_UPTO = (
    "SELECT max(pos) FROM (SELECT pos, created_at FROM notifications WHERE pos > $1 "
    "ORDER BY pos LIMIT $2) page WHERE created_at < $3"
)
"""The last old position among the next ``batch`` after ``after`` (positions are commit
ordered and timestamps nearly so)."""

RAISE_WATERMARK = (
    "UPDATE stream_position SET pruned_pos = greatest(pruned_pos, $1) WHERE id = 1"
)

PRUNE_NOTIFICATIONS = (
    "DELETE FROM notifications WHERE pos > $1 AND pos <= $2 AND created_at < $3 "
    "AND type <> ALL($4::text[])"
)

PRUNE_STAGE_RUNS = (
    "DELETE FROM stage_runs WHERE id IN (SELECT s.id FROM stage_runs s "
    "JOIN executions e ON e.id = s.execution_id WHERE e.status = ANY($1::text[]) "
    "AND coalesce(e.finished_at, e.updated_at) < $2 LIMIT $3)"
)

OLD_CONTEXTS = (
    "SELECT v.id, v.task_context::text AS context FROM events v "
    "JOIN executions e ON e.event_id = v.id WHERE e.status = ANY($1::text[]) "
    "AND coalesce(e.finished_at, e.updated_at) < $2 "
    "AND v.task_context ? 'nodes' AND NOT v.task_context ? 'pruned' LIMIT $3"
)

SET_CONTEXT = (
    "UPDATE events SET task_context = $1::text::jsonb, updated_at = now() WHERE id = $2"
)


def _count(status: str) -> int:
    """Rows of an asyncpg command status (``DELETE 42``)."""
    return int(status.rsplit(" ", 1)[-1])


class PgRetention:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def watermark(self) -> int:
        return int(await self.conn.fetchval(WATERMARK))

    async def old_upto(self, after: int, batch: int, cutoff: datetime) -> int | None:
        value = await self.conn.fetchval(OLD_UPTO, after, batch, cutoff)
        return None if value is None else int(value)

    async def raise_watermark(self, upto: int) -> None:
        await self.conn.execute(RAISE_WATERMARK, upto)

    async def prune_notifications(self, after: int, upto: int, cutoff: datetime,
                                  kept: list[str]) -> int:
        return _count(await self.conn.execute(PRUNE_NOTIFICATIONS, after, upto, cutoff, kept))

    async def prune_stage_runs(self, ended: list[str], cutoff: datetime, batch: int) -> int:
        return _count(await self.conn.execute(PRUNE_STAGE_RUNS, ended, cutoff, batch))

    async def old_contexts(self, ended: list[str], cutoff: datetime,
                           batch: int) -> list[OldContext]:
        rows = await self.conn.fetch(OLD_CONTEXTS, ended, cutoff, batch)
        return [OldContext(r["id"], loads(r["context"])) for r in rows]

    async def set_context(self, event_id: uuid.UUID, context: dict[str, Any]) -> None:
        await self.conn.execute(SET_CONTEXT, dumps(context), event_id)
