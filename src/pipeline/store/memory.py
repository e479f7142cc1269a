"""The store port in memory: the same named queries over dicts, for the unit tier.

One ``MemoryStore`` is one database. A transaction works on the live tables and, when
it raises, puts back the copy taken when it began (rollback); transactions run one at a
time (a single lock stands in for Postgres's row locks). ``clock`` gives ``now()``, so a
test can move time. The contract suite holds it to ``pg``'s behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from pipeline.store.audit import AuditRow, NewAuditEntry
from pipeline.store.details import MAX_ERRORS, MAX_STAGE_RUNS, DetailParts, error_of, run_of
from pipeline.store.executions import (
    ACTIVE,
    SETTABLE,
    EventRow,
    ExecutionError,
    ExecutionRow,
    NewEvent,
    NewExecution,
    NewStart,
    PriorStart,
    SetupRow,
    Started,
    StartPoint,
    StatusRow,
)
from pipeline.store.idempotency import KeyRow
from pipeline.store.notifications import Appended
from pipeline.store.outbox import Claimed, CommandRow, Fleet, NewCommand
from pipeline.store.projects import InjectionRow, NewInjection, ProjectRow
from pipeline.store.stage_runs import StageRunRow
from pipeline.store.usage import DayUsage, UsageSums, sum_runs


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _json(value: Any) -> Any:
    """A value as it reads back from a ``jsonb`` column."""
    return msgspec.json.decode(msgspec.json.encode(value))


class Tables:
    """The rows of every table the port touches."""

    def __init__(self) -> None:
        self.projects: dict[str, dict[str, Any]] = {}
        self.events: dict[uuid.UUID, dict[str, Any]] = {}
        self.executions: dict[uuid.UUID, dict[str, Any]] = {}
        self.stage_runs: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []
        self.stream_pos = 0
        self.idempotency: dict[tuple[str, str], dict[str, Any]] = {}
        self.audit: list[dict[str, Any]] = []
        self.injected_tasks: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.notified: list[tuple[str, str]] = []
        """``(channel, payload)`` of every NOTIFY committed."""
        self.ids = itertools.count(1)


class _Base:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    @property
    def t(self) -> Tables:
        return self.store.tables

    def now(self) -> datetime:
        return self.store.clock()


class MemoryExecutions(_Base):
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
        self.t.events[new.id] = {**_json(msgspec.structs.asdict(new)), "id": new.id,
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

    async def start(self, new: NewStart) -> Started:
        new.check()
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

    async def set_fields(self, execution_id: uuid.UUID, fields: dict[str, Any]) -> None:
        unknown = sorted(set(fields) - SETTABLE)
        if unknown:
            raise ValueError(f"not a settable execution column: {', '.join(unknown)}")
        x = self.t.executions.get(execution_id)
        if x is None or not fields:
            return
        x.update({k: _json(v) if k == "pending_command" else v for k, v in fields.items()})
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

    async def for_start(self, project_id: str) -> StartPoint | None:
        if project_id not in self.t.projects:
            return None
        values = self._latest(project_id)
        return StartPoint(latest=None if values is None else self._row(values))

    async def lock_last_update(self, execution_id: uuid.UUID) -> Any:
        values = self.t.executions.get(execution_id)
        return None if values is None else copy.deepcopy(values["last_update"])

    async def status(self, project_id: str) -> StatusRow | None:
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
        # sandbox leases are not kept in memory (no query of the port writes them)
        return StatusRow(execution=self._row(values), setup=setup, wait=None, usage=usage)


class MemoryStageRuns(_Base):
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


class MemoryOutbox(_Base):
    async def enqueue(self, command: NewCommand) -> int:
        command_id = next(self.t.ids)
        now = self.now()
        self.t.outbox.append({
            "id": command_id, "execution_id": command.execution_id,
            "customer_id": command.customer_id, "actor": command.actor,
            "payload": _json(command.payload), "correlation_id": command.correlation_id,
            "created_at": now, "available_at": now + timedelta(seconds=command.delay_seconds),
            "dispatched_at": None, "dispatch_count": 0, "completed_at": None,
        })
        self.store.notify("devteam_outbox", "")
        return command_id

    def _get(self, command_id: int) -> dict[str, Any] | None:
        return next((c for c in self.t.outbox if c["id"] == command_id), None)

    async def load(self, command_id: int) -> CommandRow | None:
        c = self._get(command_id)
        if c is None:
            return None
        return CommandRow(payload=copy.deepcopy(c["payload"]), customer_id=c["customer_id"],
                          correlation_id=c["correlation_id"])

    async def complete(self, command_id: int) -> None:
        c = self._get(command_id)
        if c is not None and c["completed_at"] is None:
            c["completed_at"] = self.now()

    async def claim_batch(self, *, per_customer: int, batch: int) -> list[Claimed]:
        now = self.now()
        inflight: dict[str, int] = {}
        for c in self.t.outbox:
            if c["dispatched_at"] is not None and c["completed_at"] is None:
                inflight[c["customer_id"]] = inflight.get(c["customer_id"], 0) + 1
        turns: list[tuple[int, int, str]] = []
        seen: dict[str, int] = {}
        for c in sorted(self.t.outbox, key=lambda c: c["id"]):
            if c["dispatched_at"] is None and c["available_at"] <= now:
                seen[c["customer_id"]] = seen.get(c["customer_id"], 0) + 1
                turn = seen[c["customer_id"]] + inflight.get(c["customer_id"], 0)
                if turn <= per_customer:
                    turns.append((turn, c["id"], c["actor"]))
        return [Claimed(id=i, actor=a) for _, i, a in sorted(turns)[:batch]]

    async def mark_dispatched(self, ids: list[int]) -> None:
        for c in self.t.outbox:
            if c["id"] in ids:
                c["dispatched_at"] = self.now()
                c["dispatch_count"] += 1

    async def requeue_stale(self, *, grace_seconds: float) -> list[int]:
        now = self.now()

        def runs_of(c: dict[str, Any]) -> list[dict[str, Any]]:
            p = c["payload"]
            return [s for s in self.t.stage_runs
                    if str(s["execution_id"]) == p.get("execution_id")
                    and s["task_id"] == p.get("task_id") and s["stage"] == p.get("stage")
                    and s.get("pass_no", 1) == (p.get("pass_no") or 1)
                    and s["attempt"] == p.get("attempt") and s["status"] == "running"]

        requeued = []
        for c in self.t.outbox:
            if c["dispatched_at"] is None or c["completed_at"] is not None:
                continue
            runs = runs_of(c)
            lapsed = any(s["lease_until"] <= now and c["dispatched_at"] < s["lease_until"]
                         for s in runs)
            lost = (c["dispatched_at"] < now - timedelta(seconds=grace_seconds)
                    and not any(s["lease_until"] > now for s in runs))
            if lapsed or lost:
                c["dispatched_at"], c["available_at"] = None, now
                requeued.append(c["id"])
        return requeued

    async def fleet(self) -> Fleet:
        now = self.now()
        due = [c["available_at"] for c in self.t.outbox
               if c["dispatched_at"] is None and c["available_at"] <= now]
        statuses: dict[str, int] = {}
        for x in self.t.executions.values():
            statuses[x["status"]] = statuses.get(x["status"], 0) + 1
        # sandbox leases are not kept in memory (no query of the port writes them)
        return Fleet(backlog=sum(1 for c in self.t.outbox if c["dispatched_at"] is None),
                     oldest_age=(now - min(due)).total_seconds() if due else 0.0,
                     executions=statuses, running={}, waiting={})


class MemoryNotifications(_Base):
    async def append(
        self,
        execution_id: uuid.UUID,
        frames: list[tuple[str, dict[str, Any]]],
        *,
        created_at: datetime,
        last_update: Any = None,
    ) -> Appended:
        x = self.t.executions.get(execution_id)
        if x is None:
            raise LookupError(f"no execution {execution_id}")
        n = len(frames)
        x["last_seq"] += n
        x["updated_at"] = self.now()
        if last_update is not None:
            x["last_update"] = _json(last_update)
        first_seq = x["last_seq"] - n + 1
        first_pos = self.t.stream_pos + 1
        self.t.stream_pos += n
        for i, (kind, payload) in enumerate(frames):
            self.t.notifications.append({
                "pos": first_pos + i, "execution_id": execution_id, "seq": first_seq + i,
                "customer_id": x["customer_id"], "project_id": x["project_id"], "type": kind,
                "payload": _json(payload), "created_at": created_at,
            })
        self.store.notify("devteam_stream", str(self.t.stream_pos))
        return Appended(first_pos=first_pos, first_seq=first_seq,
                        customer_id=x["customer_id"], project_id=x["project_id"],
                        created_at=created_at)


class MemoryProjects(_Base):
    async def upsert(self, project_id: str, customer_id: str, repository_url: str) -> None:
        now = self.now()
        row = self.t.projects.get(project_id)
        if row is None:
            self.t.projects[project_id] = {
                "project_id": project_id, "customer_id": customer_id,
                "repository_url": repository_url, "default_branch": None,
                "task_list_path": None, "verification": {}, "quota": {},
                "created_at": now, "updated_at": now,
            }
            return
        if row["repository_url"] != repository_url:
            row["default_branch"] = None
        row["repository_url"] = repository_url
        row["updated_at"] = now

    async def lock(self, project_id: str) -> bool:
        return project_id in self.t.projects

    async def get(self, project_id: str) -> ProjectRow | None:
        row = self.t.projects.get(project_id)
        if row is None:
            return None
        fields = {k: v for k, v in row.items() if k not in ("created_at", "updated_at")}
        return msgspec.convert(copy.deepcopy(fields), ProjectRow)

    async def review_injections(self, project_id: str) -> None:
        for task in self.t.injected_tasks:
            if (task["project_id"] == project_id and task.get("source_error_id") is not None
                    and task["status"] in ("done", "failed")):
                task["status"] = "reviewed"

    async def injections(self, project_id: str) -> list[InjectionRow]:
        return [InjectionRow(task_id=t["task_id"], injection_type=t["injection_type"],
                             position=t.get("position"), replace_task_id=t.get("replace_task_id"),
                             task=copy.deepcopy(t.get("task") or {}), status=t["status"])
                for t in self.t.injected_tasks if t["project_id"] == project_id
                and t["status"] in ("pending", "done", "reviewed", "failed")]

    async def inject(self, new: NewInjection) -> tuple[str, int]:
        if new.project_id not in self.t.projects:
            raise LookupError(f"foreign key: no project {new.project_id}")
        injection_id = next(self.t.ids)
        task_id = f"inj-{injection_id}"
        self.t.injected_tasks.append({
            **msgspec.structs.asdict(new), "id": injection_id, "task_id": task_id,
            "task": _json(new.task), "status": "pending", "source_error_id": None,
            "created_at": self.now()})
        return task_id, injection_id

    async def record_checkout(
        self, project_id: str, default_branch: str, task_list_path: str
    ) -> None:
        row = self.t.projects.get(project_id)
        if row is not None:
            row["default_branch"] = default_branch
            row["task_list_path"] = row["task_list_path"] or task_list_path
            row["updated_at"] = self.now()

    async def injected_progress(self, project_id: str) -> tuple[int, int]:
        adding = [t["status"] for t in self.t.injected_tasks
                  if t["project_id"] == project_id and t["injection_type"] != "replace"
                  and t["status"] in ("pending", "done")]
        return adding.count("done"), len(adding)


class MemoryIdempotency(_Base):
    async def insert(
        self, user_id: str, key: str, request_hash: str, *, lock: timedelta, ttl: timedelta
    ) -> bool:
        if (user_id, key) in self.t.idempotency:
            return False
        await self.retake(user_id, key, request_hash, lock=lock, ttl=ttl)
        return True

    async def lock(self, user_id: str, key: str) -> KeyRow | None:
        row = self.t.idempotency.get((user_id, key))
        if row is None:
            return None
        now = self.now()
        return KeyRow(request_hash=row["request_hash"], status=row["status"],
                      response_status=row["response_status"],
                      response_headers=copy.deepcopy(row["response_headers"]),
                      response_body=row["response_body"],
                      locked=row["locked_until"] > now, expired=row["expires_at"] <= now)

    async def retake(
        self, user_id: str, key: str, request_hash: str, *, lock: timedelta, ttl: timedelta
    ) -> None:
        now = self.now()
        self.t.idempotency[(user_id, key)] = {
            "request_hash": request_hash, "status": "in_flight", "response_status": None,
            "response_headers": None, "response_body": None, "locked_until": now + lock,
            "created_at": now, "expires_at": now + ttl,
        }

    async def finish(
        self, user_id: str, key: str, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        row = self.t.idempotency.get((user_id, key))
        if row is not None:
            row.update(status="completed", response_status=status,
                       response_headers=_json(headers), response_body=bytes(body))

    async def renew(self, user_id: str, key: str, *, lock: timedelta) -> None:
        row = self.t.idempotency.get((user_id, key))
        if row is not None and row["status"] == "in_flight":
            row["locked_until"] = self.now() + lock

    async def release(self, user_id: str, key: str) -> None:
        row = self.t.idempotency.get((user_id, key))
        if row is not None and row["status"] == "in_flight":
            del self.t.idempotency[(user_id, key)]

    async def sweep(self) -> int:
        now = self.now()
        expired = [k for k, row in self.t.idempotency.items() if row["expires_at"] <= now]
        for k in expired:
            del self.t.idempotency[k]
        return len(expired)


class MemoryAudit(_Base):
    async def record(self, entry: NewAuditEntry) -> None:
        self.t.audit.append({**msgspec.structs.asdict(entry), "id": next(self.t.ids),
                             "details": _json(entry.details), "at": self.now()})

    async def of_execution(self, execution_id: uuid.UUID) -> list[AuditRow]:
        return [msgspec.convert(copy.deepcopy(a), AuditRow) for a in self.t.audit
                if a["execution_id"] == execution_id]


class MemoryDetails(_Base):
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


class MemoryUsage(_Base):
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


class MemoryTx:
    def __init__(self, store: MemoryStore) -> None:
        self.executions = MemoryExecutions(store)
        self.stage_runs = MemoryStageRuns(store)
        self.outbox = MemoryOutbox(store)
        self.notifications = MemoryNotifications(store)
        self.projects = MemoryProjects(store)
        self.idempotency = MemoryIdempotency(store)
        self.audit = MemoryAudit(store)
        self.usage = MemoryUsage(store)
        self.details = MemoryDetails(store)


class MemoryStore:
    """The port in memory; ``tables`` holds the rows (a test may look)."""

    def __init__(self, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.tables = Tables()
        self.clock = clock
        self._lock = asyncio.Lock()
        self._pending: list[tuple[str, str]] | None = None
        self._unit: contextvars.ContextVar[MemoryTx | None] = contextvars.ContextVar(
            f"memory_unit_{id(self)}", default=None)

    def current(self) -> MemoryTx:
        """The queries of the transaction under way (one runs at a time)."""
        return MemoryTx(self)

    def notify(self, channel: str, payload: str) -> None:
        """NOTIFY: delivered at commit, once per distinct ``(channel, payload)``."""
        if self._pending is not None and (channel, payload) not in self._pending:
            self._pending.append((channel, payload))

    @contextlib.asynccontextmanager
    async def _begin(self) -> AsyncIterator[MemoryTx]:
        async with self._lock:
            saved = copy.deepcopy(self.tables.__dict__ | {"ids": None})
            ids = self.tables.ids
            self._pending = []
            try:
                yield MemoryTx(self)
            except BaseException:
                self.tables.__dict__.update(saved)
                self.tables.ids = ids
                raise
            else:
                self.tables.notified.extend(self._pending)
            finally:
                self._pending = None

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[MemoryTx]:
        joined = self._unit.get()
        if joined is not None:
            yield joined
            return
        async with self._begin() as tx:
            yield tx

    @contextlib.asynccontextmanager
    async def reads(self) -> AsyncIterator[MemoryTx]:
        async with self.tx() as tx:
            yield tx

    @contextlib.asynccontextmanager
    async def unit(self) -> AsyncIterator[None]:
        async with self._begin() as tx:
            token = self._unit.set(tx)
            try:
                yield
            finally:
                self._unit.reset(token)
