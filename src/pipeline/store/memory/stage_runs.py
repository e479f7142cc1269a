"""Stage runs in memory."""

from __future__ import annotations

import copy
import uuid

from pipeline.store.memory.base import Base
from pipeline.store.stage_runs import StageRunRow


class MemoryStageRuns(Base):
    async def running(self, execution_id: uuid.UUID) -> bool:
        now = self.now()
        return any(s["execution_id"] == execution_id and s["status"] == "running"
                   and s["lease_until"] is not None and s["lease_until"] > now
                   for s in self.t.stage_runs)


    async def done(self, execution_id: uuid.UUID, task_id: str) -> bool:
        return any(s["execution_id"] == execution_id and s["task_id"] == task_id
                   and s["stage"] == "DONE" and s["status"] == "succeeded"
                   for s in self.t.stage_runs)

    async def passes(self, execution_id: uuid.UUID, task_id: str) -> int:
        return max((int(s.get("pass_no", 1)) for s in self.t.stage_runs
                    if s["execution_id"] == execution_id and s["task_id"] == task_id
                    and s["stage"] == "PREP"), default=0)


    async def of_execution(self, execution_id: uuid.UUID) -> list[StageRunRow]:
        runs = sorted((r for r in self.t.stage_runs if r["execution_id"] == execution_id),
                      key=lambda r: r["id"])
        return [StageRunRow(task_id=r["task_id"], stage=r["stage"],
                            pass_no=int(r.get("pass_no", 1)), attempt=int(r["attempt"]),
                            status=r["status"], duration_ms=r.get("duration_ms"),
                            result=copy.deepcopy(r.get("result"))) for r in runs]
