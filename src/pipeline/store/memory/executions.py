"""Executions and events in memory."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from pipeline.store.common import safe_text
from pipeline.store.execution_rows import SlotWaitRow
from pipeline.store.executions import (
    ACTIVE,
    SETTABLE,
    EventRow,
    ExecutionError,
    ExecutionRow,
    NewError,
    NewEvent,
    NewExecution,
    NewStart,
    PriorStart,
    SetupRow,
    StartAttempt,
    Started,
    StatusRow,
)
from pipeline.store.memory.base import Base, json_value
from pipeline.store.memory.leases import wait_of
from pipeline.store.usage import sum_runs


class MemoryExecutions(Base):
    def _row(self, values: dict[str, Any]) -> ExecutionRow:
        fields = {k: v for k, v in values.items() if k != "last_update"}
        return msgspec.convert(copy.deepcopy(fields), ExecutionRow)

    async def get(self, execution_id: uuid.UUID, *, lock: bool = False) -> ExecutionRow | None:
        values = self.t.executions.get(execution_id)
        return None if values is None else self._row(values)

    def _latest(self, project_id: str) -> dict[str, Any] | None:
        rows = [x for x in self.t.executions.values() if x["project_id"] == project_id]
        if not rows:
            return None
        return max(rows, key=lambda x: (x["status"] in ACTIVE, x["started_at"]))

    async def latest_for_project(
        self, project_id: str, *, lock: bool = False
    ) -> ExecutionRow | None:
        values = self._latest(project_id)
        return None if values is None else self._row(values)

    async def insert(self, new: NewExecution) -> ExecutionRow:
        if new.project_id not in self.t.projects:
            raise LookupError(f"foreign key: no project {new.project_id}")
        if new.id in self.t.executions:
            raise ValueError(f"duplicate execution {new.id}")
        if new.status in ACTIVE and any(
            x["project_id"] == new.project_id and x["status"] in ACTIVE
            for x in self.t.executions.values()
        ):
            raise ValueError(f"{new.project_id} already has an active execution")
        now = self.now()
        values = {
            **msgspec.structs.asdict(new), "pause_reason": None, "current_task_id": None,
            "current_stage": None, "branch": None, "completed_tasks": 0, "total_tasks": 0,
            "last_seq": 0, "pending_command": None, "error_id": None, "started_at": now,
            "updated_at": now, "finished_at": None, "last_update": None,
        }
        self.t.executions[new.id] = values
        return self._row(values)

    async def insert_event(self, new: NewEvent) -> None:
        if new.id in self.t.events:
            raise ValueError(f"duplicate event {new.id}")
        if new.idempotency_key is not None and any(
            (e["user_id"], e["project_id"], e["idempotency_key"])
            == (new.user_id, new.project_id, new.idempotency_key)
            for e in self.t.events.values()
        ):
            raise ValueError("duplicate idempotency key")
        now = self.now()
        self.t.events[new.id] = {**json_value(msgspec.structs.asdict(new)), "id": new.id,
                                 "created_at": now, "updated_at": now}

    async def event(self, event_id: uuid.UUID) -> EventRow | None:
        e = self.t.events.get(event_id)
        if e is None:
            return None
        execution = next((x["id"] for x in self.t.executions.values()
                          if x["event_id"] == event_id), None)
        return EventRow(id=e["id"], workflow_type=e["workflow_type"],
                        data=copy.deepcopy(e["data"]),
                        task_context=copy.deepcopy(e["task_context"]),
                        created_at=e["created_at"], updated_at=e["updated_at"],
                        correlation_id=e["correlation_id"], project_id=e["project_id"],
                        execution_id=execution)

    async def prior_start(self, user_id: str, project_id: str, key: str) -> PriorStart | None:
        for e in self.t.events.values():
            if (e["user_id"], e["project_id"], e["idempotency_key"]) != (user_id, project_id,
                                                                           key):
                continue
            x = next((x for x in self.t.executions.values() if x["event_id"] == e["id"]), None)
            if x is None:
                return None
            commands = [c["id"] for c in self.t.outbox if c["execution_id"] == x["id"]]
            return PriorStart(event_id=e["id"], execution_id=x["id"],
                              correlation_id=e["correlation_id"],
                              command_id=min(commands) if commands else None,
                              idempotency_hash=e["idempotency_hash"])
        return None

    async def _start(self, new: NewStart) -> Started:
        tx = self.store.current()
        await self.insert_event(new.event)
        await self.insert(new.execution)
        command_id = await tx.outbox.enqueue(new.command)
        await tx.audit.record(new.audit)
        appended = await tx.notifications.append(
            new.execution.id, [(new.kind, new.payload)], created_at=new.created_at,
            last_update=new.payload)
        row = self._row(self.t.executions[new.execution.id])
        return Started(execution=row, command_id=command_id, pos=appended.first_pos)

    async def start_checked(self, new: NewStart) -> StartAttempt:
        new.check()
        project_id = new.event.project_id
        if project_id not in self.t.projects:
            return StartAttempt(found=False, latest_status=None, started=None)
        latest = self._latest(project_id)
        status = None if latest is None else str(latest["status"])
        if status in ACTIVE:
            return StartAttempt(found=True, latest_status=status, started=None)
        return StartAttempt(found=True, latest_status=status, started=await self._start(new))

    async def set_fields(self, execution_id: uuid.UUID, fields: dict[str, Any]) -> None:
        unknown = sorted(set(fields) - SETTABLE)
        if unknown:
            raise ValueError(f"not a settable execution column: {', '.join(unknown)}")
        x = self.t.executions.get(execution_id)
        if x is None or not fields:
            return
        x.update({k: json_value(v) if k == "pending_command" else v for k, v in fields.items()})
        x["updated_at"] = self.now()

    async def list_for(
        self,
        *,
        user_id: str | None,
        project_ids: list[str] | None,
        customer_ids: list[str] | None,
        active_only: bool,
        limit: int,
    ) -> list[ExecutionRow]:
        def wanted(x: dict[str, Any]) -> bool:
            if user_id is not None and x["user_id"] != user_id:
                return False
            if (project_ids is not None or customer_ids is not None) and not (
                x["project_id"] in (project_ids or []) or x["customer_id"] in (customer_ids or [])
            ):
                return False
            return not active_only or x["status"] in ACTIVE

        rows = sorted((x for x in self.t.executions.values() if wanted(x)),
                      key=lambda x: str(x["id"]))
        rows.sort(key=lambda x: x["started_at"], reverse=True)
        return [self._row(x) for x in rows[:limit]]

    async def error(
        self, execution_id: uuid.UUID, error_id: uuid.UUID
    ) -> ExecutionError | None:
        x = self.t.executions.get(execution_id)
        for e in self.t.errors:
            if e["id"] == error_id and e["execution_id"] == execution_id and x is not None:
                return ExecutionError(
                    id=e["id"], execution_id=execution_id, task_id=e.get("task_id"),
                    stage=e["stage"], classification=e["classification"],
                    message=e["message"], details=copy.deepcopy(e.get("details") or {}),
                    attempts=int(e.get("attempts", 1)), created_at=e["created_at"],
                    project_id=x["project_id"])
        return None

    async def task_summaries(self, execution_id: uuid.UUID) -> dict[str, Any]:
        x = self.t.executions.get(execution_id)
        event = {} if x is None else self.t.events.get(x["event_id"]) or {}
        tasks = dict(event.get("task_context") or {}).get("tasks")
        return copy.deepcopy(tasks) if isinstance(tasks, dict) else {}

    async def error_line(self, error_id: uuid.UUID) -> str | None:
        e = next((e for e in self.t.errors if e["id"] == error_id), None)
        return None if e is None else f"{e['classification']}: {e['message']}"

    async def record_error(self, new: NewError) -> None:
        if new.execution_id not in self.t.executions:
            raise LookupError(f"foreign key: no execution {new.execution_id}")
        if any(e["id"] == new.id for e in self.t.errors):
            raise ValueError(f"duplicate error {new.id}")
        self.t.errors.append({**msgspec.structs.asdict(new), "message": safe_text(new.message),
                              "details": json_value(new.details), "created_at": self.now()})

    async def lock_task_context(self, event_id: uuid.UUID) -> dict[str, Any]:
        event = self.t.events.get(event_id)
        if event is None:
            raise LookupError(f"no event {event_id}")
        return dict(copy.deepcopy(event["task_context"]) or {})

    async def set_task_context(self, event_id: uuid.UUID, context: dict[str, Any]) -> None:
        event = self.t.events.get(event_id)
        if event is not None:
            event["task_context"] = json_value(context)
            event["updated_at"] = self.now()

    async def active_ids(self) -> list[uuid.UUID]:
        return [x["id"] for x in self.t.executions.values() if x["status"] in ACTIVE]

    async def lock_last_update(self, execution_id: uuid.UUID) -> Any:
        values = self.t.executions.get(execution_id)
        return None if values is None else copy.deepcopy(values["last_update"])

    async def statuses(self, project_ids: Sequence[str]) -> dict[str, StatusRow]:
        found = {p: self._status(p) for p in project_ids}
        return {p: row for p, row in found.items() if row is not None}

    def _status(self, project_id: str) -> StatusRow | None:
        values = self._latest(project_id)
        if values is None:
            return None
        setups = [s for s in self.t.stage_runs if s["execution_id"] == values["id"]
                  and s["stage"] == "SETUP" and s["status"] in ("succeeded", "failed")]
        setup = None
        if setups:
            s = max(setups, key=lambda s: s["id"])
            setup = SetupRow(task_id=s["task_id"], status=s["status"],
                             duration_ms=s["duration_ms"], result=copy.deepcopy(s["result"]),
                             error=copy.deepcopy(s["error"]))
        usage = sum_runs((r["stage"], r["usage"]) for r in self.t.stage_runs
                         if r["execution_id"] == values["id"] and r.get("usage") is not None)
        lease = wait_of(self.t.sandbox_leases, self.now(),
                        lambda x: x["execution_id"] == str(values["id"]))
        wait = None if lease is None else SlotWaitRow(
            holder=lease.holder, requested_at=lease.requested_at, seconds=lease.seconds,
            position=lease.position, waiting=lease.waiting,
            customer_running=lease.customer_running, running=lease.running)
        return StatusRow(execution=self._row(values), setup=setup, wait=wait, usage=usage)
