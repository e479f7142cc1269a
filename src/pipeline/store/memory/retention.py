"""Retention's statements in memory (``pipeline.store.retention`` over the tables)."""

from __future__ import annotations

import copy
import uuid
from datetime import datetime
from typing import Any

from pipeline.store.memory.base import Base, json_value
from pipeline.store.retention import OldContext


class MemoryRetention(Base):
    def _ended_before(self, execution: dict[str, Any] | None, ended: list[str],
                      cutoff: datetime) -> bool:
        if execution is None or execution["status"] not in ended:
            return False
        at = execution.get("finished_at") or execution["updated_at"]
        return bool(at < cutoff)

    async def watermark(self) -> int:
        return self.t.pruned_pos

    async def old_upto(self, after: int, batch: int, cutoff: datetime) -> int | None:
        page = sorted((n for n in self.t.notifications if n["pos"] > after),
                      key=lambda n: n["pos"])[:batch]
        old = [n["pos"] for n in page if n["created_at"] < cutoff]
        return max(old) if old else None

    async def raise_watermark(self, upto: int) -> None:
        self.t.pruned_pos = max(self.t.pruned_pos, upto)

    async def prune_notifications(self, after: int, upto: int, cutoff: datetime,
                                  kept: list[str]) -> int:
        def goes(n: dict[str, Any]) -> bool:
            return (after < n["pos"] <= upto and n["created_at"] < cutoff
                    and n["type"] not in kept)

        before = len(self.t.notifications)
        self.t.notifications[:] = [n for n in self.t.notifications if not goes(n)]
        return before - len(self.t.notifications)

    async def prune_stage_runs(self, ended: list[str], cutoff: datetime, batch: int) -> int:
        goes = {id(r) for r in [r for r in self.t.stage_runs if self._ended_before(
            self.t.executions.get(r["execution_id"]), ended, cutoff)][:batch]}
        self.t.stage_runs[:] = [r for r in self.t.stage_runs if id(r) not in goes]
        return len(goes)

    async def old_contexts(self, ended: list[str], cutoff: datetime,
                           batch: int) -> list[OldContext]:
        found: list[OldContext] = []
        for execution in self.t.executions.values():
            event = self.t.events.get(execution["event_id"])
            context = None if event is None else event.get("task_context")
            if (isinstance(context, dict) and "nodes" in context and "pruned" not in context
                    and self._ended_before(execution, ended, cutoff)):
                found.append(OldContext(execution["event_id"], copy.deepcopy(context)))
        return found[:batch]

    async def set_context(self, event_id: uuid.UUID, context: dict[str, Any]) -> None:
        event = self.t.events.get(event_id)
        if event is not None:
            event.update(task_context=json_value(context), updated_at=self.now())
