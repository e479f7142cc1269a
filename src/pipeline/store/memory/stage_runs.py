"""Stage runs in memory."""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timedelta
from typing import Any

from pipeline.store.memory.base import Base, json_value
from pipeline.store.stage_runs import Claim, Finished, RunKey, StageRunRow


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

    def _run(self, key: RunKey) -> dict[str, Any] | None:
        return next((r for r in self.t.stage_runs if r["execution_id"] == key.execution_id
                     and r["task_id"] == key.task_id and r["stage"] == key.stage
                     and r.get("pass_no", 1) == key.pass_no and r["attempt"] == key.attempt),
                    None)

    def _held(self, run_id: int, owner: str) -> dict[str, Any] | None:
        return next((r for r in self.t.stage_runs if r["id"] == run_id
                     and r.get("lease_owner") == owner and r["status"] == "running"), None)

    def _of(self, execution_id: uuid.UUID, stage: str) -> list[dict[str, Any]]:
        return [r for r in self.t.stage_runs
                if r["execution_id"] == execution_id and r["stage"] == stage]

    async def claim(self, key: RunKey, *, command_id: int, owner: str,
                    lease_seconds: float) -> Claim | None:
        if key.execution_id not in self.t.executions:
            raise LookupError(f"foreign key: no execution {key.execution_id}")
        now = self.now()
        lease = {"status": "running", "lease_owner": owner, "command_id": command_id,
                 "lease_until": now + timedelta(seconds=lease_seconds)}
        run = self._run(key)
        if run is None:
            run = {**{f: getattr(key, f) for f in key.__struct_fields__}, **lease,
                   "id": next(self.t.ids), "claims": 1, "started_at": now,
                   "finished_at": None, "duration_ms": None, "result": None, "error": None,
                   "usage": None}
            self.t.stage_runs.append(run)
        elif run["status"] == "retrying" or (
                run["status"] == "running" and run["lease_until"] is not None
                and run["lease_until"] <= now):
            run.update(lease, claims=run.get("claims", 1) + 1, started_at=now)
        else:
            return None
        return Claim(id=run["id"], claims=run["claims"])

    async def status(self, key: RunKey) -> str | None:
        run = self._run(key)
        return None if run is None else str(run["status"])

    async def renew(self, run_id: int, owner: str, lease_seconds: float) -> str | None:
        run = self._held(run_id, owner)
        if run is None:
            return None
        run["lease_until"] = self.now() + timedelta(seconds=lease_seconds)
        return str(self.t.executions[run["execution_id"]]["status"])

    async def finish(self, run_id: int, owner: str, done: Finished) -> datetime | None:
        run = self._held(run_id, owner)
        if run is None:
            return None
        run.update(status=done.status, finished_at=self.now(), duration_ms=done.duration_ms,
                   result=json_value(done.result), error=json_value(done.error),
                   usage=json_value(done.usage))
        if done.status == "retrying":
            run.update(lease_owner=None, lease_until=None)
        started: datetime = run["started_at"]
        return started

    async def attempts(self, execution_id: uuid.UUID, task_id: str, stage: str) -> int:
        return sum(1 for r in self._of(execution_id, stage) if r["task_id"] == task_id)

    async def result(self, execution_id: uuid.UUID, task_id: str, stage: str, pass_no: int,
                     attempt: int | None = None) -> dict[str, Any] | None:
        runs = [r for r in self._of(execution_id, stage)
                if r["task_id"] == task_id and r.get("pass_no", 1) == pass_no
                and r["status"] in ("succeeded", "failed")
                and (attempt is None or r["attempt"] == attempt)]
        if not runs:
            return None
        value = max(runs, key=lambda r: (r["attempt"], r["id"])).get("result")
        return copy.deepcopy(dict(value)) if value else None

    def _latest(self, runs: list[dict[str, Any]]) -> dict[str, Any] | None:
        return max(runs, key=lambda r: r["id"]) if runs else None

    async def selection(self, execution_id: uuid.UUID, task_id: str) -> dict[str, Any] | None:
        run = self._latest([r for r in self._of(execution_id, "SELECT")
                            if r["status"] == "succeeded"
                            and _get(_get(r.get("result"), "task"), "id") == task_id])
        value = None if run is None else run.get("result")
        return copy.deepcopy(dict(value)) if value else None

    async def selects(self, execution_id: uuid.UUID) -> int:
        return len(self._of(execution_id, "SELECT"))

    async def latest_measures(self, execution_id: uuid.UUID) -> dict[str, Any] | None:
        def measured(r: dict[str, Any]) -> bool:
            result = r.get("result")
            if r["status"] != "succeeded" or not isinstance(result, dict):
                return False
            if r["stage"] == "VERIFY":
                return "measures" in result
            baseline = result.get("baseline")
            return r["stage"] == "SETUP" and isinstance(baseline, dict) and "measures" in baseline

        run = self._latest([r for r in self.t.stage_runs
                            if r["execution_id"] == execution_id and measured(r)])
        if run is None:
            return None
        value = _get(run["result"], "measures")
        if value is None:
            value = _get(_get(run["result"], "baseline"), "measures")
        return copy.deepcopy(dict(value)) if value else None

    async def baseline(self, execution_id: uuid.UUID, key: str) -> dict[str, Any] | None:
        def matches(r: dict[str, Any]) -> bool:
            baseline = _get(r.get("result"), "baseline")
            return (r["status"] == "succeeded" and isinstance(baseline, dict)
                    and baseline.get("key") == key and "measures" in baseline)

        run = self._latest([r for r in self._of(execution_id, "SETUP") if matches(r)])
        return None if run is None else copy.deepcopy(dict(run["result"]["baseline"]))


def _get(value: Any, key: str) -> Any:
    """``value -> key`` of jsonb: None unless ``value`` is an object."""
    return value.get(key) if isinstance(value, dict) else None
