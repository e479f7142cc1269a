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

from pipeline.db import Store
from pipeline.lifecycle import TERMINAL
from pipeline.store.port import StorePort
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


async def prune(store: StorePort, cutoff: datetime, batch: int) -> Pruned:
    """One retention pass: each batch a transaction (or a statement) of its own."""
    done = Pruned()
    await _notifications(store, cutoff, batch, done)
    await _stage_runs(store, cutoff, batch, done)
    await _contexts(store, cutoff, batch, done)
    return done


def _ended() -> list[str]:
    return sorted(s.value for s in TERMINAL)


async def _notifications(store: StorePort, cutoff: datetime, batch: int,
                         done: Pruned) -> None:
    for _ in range(MAX_BATCHES):
        async with store.reads() as tx:
            after = await tx.retention.watermark()
            upto = await tx.retention.old_upto(after, batch, cutoff)
            if upto is None:
                break
            # the watermark first, committed: a reader missing a row then sees it (see above)
            await tx.retention.raise_watermark(upto)
            done.notifications += await tx.retention.prune_notifications(
                after, upto, cutoff, list(KEPT_FRAMES))
        done.watermark = upto


async def _stage_runs(store: StorePort, cutoff: datetime, batch: int, done: Pruned) -> None:
    for _ in range(MAX_BATCHES):
        async with store.reads() as tx:
            removed = await tx.retention.prune_stage_runs(_ended(), cutoff, batch)
        done.stage_runs += removed
        if removed < batch:
            break


async def _contexts(store: StorePort, cutoff: datetime, batch: int, done: Pruned) -> None:
    now = datetime.now(UTC)
    for _ in range(MAX_BATCHES):
        async with store.reads() as tx:
            rows = await tx.retention.old_contexts(_ended(), cutoff, batch)
        async with store.tx() as tx:
            for row in rows:
                await tx.retention.set_context(row.event_id, prune_context(row.context, now))
        done.contexts += len(rows)
        if len(rows) < batch:
            break


async def prune_once(settings: Settings, now: datetime | None = None) -> Pruned:
    """One retention pass with a connection of its own (nothing when ``days`` is 0)."""
    cutoff = cutoff_of(settings, now)
    if cutoff is None:
        return Pruned()
    store = Store.from_settings(settings, pool_size=1)
    try:
        return await prune(store, cutoff, max(1, settings.retention.batch_rows))
    finally:
        await store.close()


def prune_old_records(settings: Settings, now: datetime | None = None) -> Pruned:
    """One retention pass: the reaper thread's entry point."""
    return asyncio.run(prune_once(settings, now))
