"""Retention: the reaper prunes what is older than ``DEVTEAM_RETENTION_DAYS``, in batches.

What goes:

- **notifications** older than the age, except ``error`` and ``completion`` frames;
- **stage runs** of executions that ended before the age (a live or paused execution's
  runs are what it resumes from, so they stay whatever their age);
- **stage outputs** in the event's ``task_context.nodes`` of those executions (each node
  keeps its status, timing and error; the context says it was pruned).

What stays: each execution's row (its status, progress, error id), its task summaries
(``task_context.tasks``), its error records, and its ``error`` and ``completion`` frames.

The stream promises replay without gaps, so pruning notifications first raises the
watermark ``stream_position.pruned_pos`` (committed on its own) and only then deletes up
to it: a reader that finds a row missing also finds the watermark past its cursor, and its
client is told ``resync`` (``gateway.fanout``). Each batch is a transaction of its own, so
the appends waiting for ``stream_position``'s lock wait for one short update only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from pipeline.db import asyncpg_dsn
from pipeline.lifecycle import TERMINAL
from pipeline.stream import iso
from runner.settings import Settings

KEPT_FRAMES = ("error", "completion")
"""Frame types retention never prunes: each execution's errors and its end."""
MAX_BATCHES = 200
"""Batches of one kind per pass; what is left waits for the next pass."""


@dataclass
class Pruned:
    notifications: int = 0
    stage_runs: int = 0
    contexts: int = 0
    watermark: int = 0

    @property
    def total(self) -> int:
        return self.notifications + self.stage_runs + self.contexts


def prune_context(context: dict[str, Any], at: datetime) -> dict[str, Any]:
    """``task_context`` without its stage outputs (``nodes.*.outputs``): summaries, node
    statuses, timings and errors stay, and ``pruned`` says when and what went."""
    nodes = context.get("nodes")
    pruned = dict(context)
    if isinstance(nodes, dict):
        pruned["nodes"] = {
            name: ({k: v for k, v in node.items() if k != "outputs"}
                   if isinstance(node, dict) else node)
            for name, node in nodes.items()
        }
    pruned["pruned"] = {"at": iso(at), "what": "stage outputs (retention)"}
    return pruned


def cutoff_of(settings: Settings, now: datetime | None = None) -> datetime | None:
    """Rows older than this are pruned; None when retention keeps everything (days 0)."""
    days = settings.retention.days
    if days <= 0:
        return None
    return (now or datetime.now(UTC)) - timedelta(days=days)


async def prune(conn: asyncpg.Connection, cutoff: datetime, batch: int) -> Pruned:
    """One retention pass over ``conn`` (outside a transaction: each batch commits)."""
    done = Pruned()
    await _notifications(conn, cutoff, batch, done)
    await _stage_runs(conn, cutoff, batch, done)
    await _contexts(conn, cutoff, batch, done)
    return done


async def _notifications(conn: asyncpg.Connection, cutoff: datetime, batch: int,
                         done: Pruned) -> None:
    for _ in range(MAX_BATCHES):
        after = int(await conn.fetchval("SELECT pruned_pos FROM stream_position WHERE id = 1"))
        # positions are commit-ordered and timestamps nearly so: the next batch's old rows
        upto = await conn.fetchval(
            "SELECT max(pos) FROM (SELECT pos, created_at FROM notifications WHERE pos > $1 "
            "ORDER BY pos LIMIT $2) page WHERE created_at < $3", after, batch, cutoff)
        if upto is None:
            break
        # the watermark first, committed: a reader missing a row then sees it (see above)
        await conn.execute("UPDATE stream_position SET pruned_pos = greatest(pruned_pos, $1) "
                           "WHERE id = 1", upto)
        status = await conn.execute(
            "DELETE FROM notifications WHERE pos > $1 AND pos <= $2 AND created_at < $3 "
            "AND type <> ALL($4::text[])", after, upto, cutoff, list(KEPT_FRAMES))
        done.notifications += _count(status)
        done.watermark = int(upto)


async def _stage_runs(conn: asyncpg.Connection, cutoff: datetime, batch: int,
                      done: Pruned) -> None:
    for _ in range(MAX_BATCHES):
        status = await conn.execute(
            "DELETE FROM stage_runs WHERE id IN (SELECT s.id FROM stage_runs s "
            "JOIN executions e ON e.id = s.execution_id WHERE e.status = ANY($1::text[]) "
            "AND coalesce(e.finished_at, e.updated_at) < $2 LIMIT $3)",
            sorted(s.value for s in TERMINAL), cutoff, batch)
        removed = _count(status)
        done.stage_runs += removed
        if removed < batch:
            break


async def _contexts(conn: asyncpg.Connection, cutoff: datetime, batch: int,
                    done: Pruned) -> None:
    now = datetime.now(UTC)
    for _ in range(MAX_BATCHES):
        rows = await conn.fetch(
            "SELECT v.id, v.task_context::text AS context FROM events v "
            "JOIN executions e ON e.event_id = v.id WHERE e.status = ANY($1::text[]) "
            "AND coalesce(e.finished_at, e.updated_at) < $2 "
            "AND v.task_context ? 'nodes' AND NOT v.task_context ? 'pruned' LIMIT $3",
            sorted(s.value for s in TERMINAL), cutoff, batch)
        async with conn.transaction():
            for row in rows:
                context = prune_context(msgspec.json.decode(row["context"]), now)
                await conn.execute(
                    "UPDATE events SET task_context = $1::text::jsonb, updated_at = now() "
                    "WHERE id = $2", msgspec.json.encode(context).decode(), row["id"])
        done.contexts += len(rows)
        if len(rows) < batch:
            break


def _count(status: str) -> int:
    """Rows of an asyncpg command status (``DELETE 42``)."""
    return int(status.rsplit(" ", 1)[-1])


async def prune_once(settings: Settings, now: datetime | None = None) -> Pruned:
    """One retention pass with a connection of its own (nothing when ``days`` is 0)."""
    cutoff = cutoff_of(settings, now)
    if cutoff is None:
        return Pruned()
    conn = await asyncpg.connect(asyncpg_dsn(settings.database.url), timeout=5)
    try:
        return await prune(conn, cutoff, max(1, settings.retention.batch_rows))
    finally:
        await conn.close()


def prune_old_records(settings: Settings, now: datetime | None = None) -> Pruned:
    """One retention pass: the reaper thread's entry point."""
    return asyncio.run(prune_once(settings, now))
