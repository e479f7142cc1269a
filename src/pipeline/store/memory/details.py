"""Execution detail parts in memory."""

from __future__ import annotations

import copy
import uuid

from pipeline.store.details import MAX_ERRORS, MAX_STAGE_RUNS, DetailParts, error_of, run_of
from pipeline.store.memory.base import Base


class MemoryDetails(Base):
    async def of_execution(self, execution_id: uuid.UUID, event_id: uuid.UUID) -> DetailParts:
        event = self.t.events.get(event_id) or {}
        tasks = dict(event.get("task_context") or {}).get("tasks")
        runs = [r for r in self.t.stage_runs if r["execution_id"] == execution_id]
        errors = sorted((e for e in self.t.errors if e["execution_id"] == execution_id),
                        key=lambda e: str(e["id"]))
        errors.sort(key=lambda e: e["created_at"], reverse=True)  # newest first, then by id
        return DetailParts(
            tasks=copy.deepcopy(tasks) if isinstance(tasks, dict) else {},
            runs=[run_of({**r, "duration_ms": r.get("duration_ms"), "usage": r.get("usage"),
                          "criteria": (r.get("result") or {}).get("results")
                          if r["stage"] == "VERIFY" else None})
                  for r in runs[:MAX_STAGE_RUNS]],
            errors=[error_of({"attempts": 1, **e}) for e in errors[:MAX_ERRORS]],
            error_count=len(errors),
        )
