"""Token usage in memory."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pipeline.store.memory.base import Base
from pipeline.store.usage import DayUsage, UsageSums, sum_runs


class MemoryUsage(Base):
    async def daily(self, customer_id: str, start: datetime, stop: datetime,
                    project_id: str | None = None) -> list[DayUsage]:
        days: dict[tuple[str, Any], list[tuple[str, dict[str, Any]]]] = {}
        for run in self.t.stage_runs:
            execution = self.t.executions.get(run["execution_id"])
            finished = run.get("finished_at")
            if (execution is None or execution["customer_id"] != customer_id
                    or run.get("usage") is None or finished is None
                    or not start <= finished < stop
                    or (project_id is not None and execution["project_id"] != project_id)):
                continue
            key = (execution["project_id"], finished.astimezone(UTC).date())
            days.setdefault(key, []).append((run["stage"], run["usage"]))
        return [DayUsage(project_id=p, day=d, sums=sum_runs(runs))
                for (p, d), runs in sorted(days.items())]

    async def of_execution(self, execution_id: uuid.UUID) -> UsageSums:
        return sum_runs((r["stage"], r["usage"]) for r in self.t.stage_runs
                        if r["execution_id"] == execution_id and r.get("usage") is not None)
