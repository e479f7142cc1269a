"""The rows of executions and of the events that start them (msgspec structs).

``executions`` holds their named queries and re-exports these names.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from pipeline.lifecycle import Status
from pipeline.store.audit import NewAuditEntry
from pipeline.store.common import iso
from pipeline.store.outbox import NewCommand
from pipeline.store.usage import UsageSums


class ExecutionRow(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    project_id: str
    customer_id: str
    event_id: uuid.UUID
    user_id: str
    status: str
    pause_reason: str | None
    stop_point: str | None
    single_task_id: str | None
    current_task_id: str | None
    current_stage: str | None
    branch: str | None
    completed_tasks: int
    total_tasks: int
    last_seq: int
    pending_command: dict[str, Any] | None
    error_id: uuid.UUID | None
    correlation_id: str
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def state(self) -> Status:
        return Status(self.status)

    @property
    def progress(self) -> int:
        """Percent of leaf tasks done, 0-100 (100 once completed)."""
        if self.status == "completed":
            return 100
        if self.total_tasks <= 0:
            return 0
        return min(100, (100 * self.completed_tasks) // self.total_tasks)

    def update_payload(self) -> dict[str, Any]:
        """The ``execution-update`` frame payload for the row as it is now."""
        payload: dict[str, Any] = {
            "status": self.status,
            "stage": self.current_stage,
            "taskId": self.current_task_id,
            "progress": self.progress,
            "branch": self.branch,
            "completedTasks": self.completed_tasks,
            "totalTasks": self.total_tasks,
        }
        if self.status == "paused" and self.pause_reason:
            payload["pauseReason"] = self.pause_reason
        return payload

    def status_view(self) -> dict[str, Any]:
        """CONTRACTS ``GET /api/devteam/automation/status/{projectId}``."""
        view: dict[str, Any] = {
            "executionId": str(self.id),
            "projectId": self.project_id,
            "customerId": self.customer_id,
            "status": self.status,
            "progress": self.progress,
            "currentTask": self.current_task_id,
            "currentStage": self.current_stage,
            "branch": self.branch,
            "totals": {"completed": self.completed_tasks, "total": self.total_tasks},
            "startedAt": iso(self.started_at),
            "updatedAt": iso(self.updated_at),
        }
        if self.status == "paused" and self.pause_reason:
            view["pauseReason"] = self.pause_reason
        if self.stop_point:
            view["stopPoint"] = self.stop_point
        if self.finished_at is not None:
            view["finishedAt"] = iso(self.finished_at)
        return view

    def summary(self) -> dict[str, Any]:
        """An entry of the active/history lists."""
        return {**self.status_view(), "userId": self.user_id}


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    workflow_type: str
    data: dict[str, Any]
    task_context: dict[str, Any]
    project_id: str
    user_id: str
    idempotency_key: str | None
    idempotency_hash: str | None
    correlation_id: str


class NewError(msgspec.Struct, frozen=True, kw_only=True):
    """An error record of a stage run (already redacted and bounded)."""

    id: uuid.UUID
    execution_id: uuid.UUID
    task_id: str | None
    stage: str
    classification: str
    message: str
    details: dict[str, Any]
    attempts: int


class EventRow(msgspec.Struct, frozen=True, kw_only=True):
    """An event with the execution it started (``GET /events/{id}``)."""

    id: uuid.UUID
    workflow_type: str
    data: dict[str, Any]
    task_context: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    correlation_id: str
    project_id: str
    execution_id: uuid.UUID | None


class NewExecution(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    project_id: str
    customer_id: str
    event_id: uuid.UUID
    user_id: str
    status: str
    stop_point: str | None
    single_task_id: str | None
    correlation_id: str


class PriorStart(msgspec.Struct, frozen=True, kw_only=True):
    """The start an ``options.idempotencyKey`` was first used for."""

    event_id: uuid.UUID
    execution_id: uuid.UUID
    correlation_id: str
    command_id: int | None
    idempotency_hash: str | None


class SetupRow(msgspec.Struct, frozen=True, kw_only=True):
    """The execution's latest finished SETUP stage run."""

    task_id: str
    status: str
    duration_ms: int | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None

    def view(self) -> dict[str, Any]:
        """``{taskId, status, tool, cached, seconds, bytes, durationMs[, error]}``."""
        result = dict(self.result or {})
        view: dict[str, Any] = {
            "taskId": self.task_id, "status": self.status, "durationMs": self.duration_ms,
            "tool": result.get("tool"), "cached": bool(result.get("cached")),
            "seconds": result.get("seconds"), "bytes": result.get("bytes"),
        }
        if self.error:
            view["error"] = str(dict(self.error).get("message", ""))
        return view


class SlotWaitRow(msgspec.Struct, frozen=True, kw_only=True):
    """The execution's container waiting for a sandbox slot (its oldest waiting lease)."""

    holder: str
    requested_at: datetime
    seconds: float
    position: int
    waiting: int
    customer_running: int
    running: int

    def view(self, *, global_limit: int, per_customer: int) -> dict[str, Any]:
        return {
            "container": self.holder,
            "since": iso(self.requested_at),
            "seconds": round(self.seconds, 1),
            "position": self.position,
            "waiting": self.waiting,
            "customerRunning": self.customer_running,
            "customerLimit": per_customer,
            "running": self.running,
            "limit": global_limit,
        }


class NewStart(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a start writes: the event, the execution, its first command, the audit
    row and the first notification (``kind``/``payload``, also remembered as the
    execution's last update)."""

    event: NewEvent
    execution: NewExecution
    command: NewCommand
    audit: NewAuditEntry
    kind: str
    payload: dict[str, Any]
    created_at: datetime


    def check(self) -> None:
        """ValueError unless the parts belong together (one statement writes them from
        shared parameters)."""
        ev, ex, cmd, audit = self.event, self.execution, self.command, self.audit
        pairs = {
            "execution.event_id": (ex.event_id, ev.id),
            "execution.project_id": (ex.project_id, ev.project_id),
            "execution.user_id": (ex.user_id, ev.user_id),
            "execution.correlation_id": (ex.correlation_id, ev.correlation_id),
            "command.execution_id": (cmd.execution_id, ex.id),
            "command.customer_id": (cmd.customer_id, ex.customer_id),
            "command.correlation_id": (cmd.correlation_id, ev.correlation_id),
            "audit.execution_id": (audit.execution_id, ex.id),
            "audit.project_id": (audit.project_id, ev.project_id),
            "audit.user_id": (audit.user_id, ev.user_id),
            "audit.correlation_id": (audit.correlation_id, ev.correlation_id),
        }
        wrong = [name for name, (a, b) in pairs.items() if a != b]
        if wrong:
            raise ValueError(f"a start's parts disagree: {', '.join(wrong)}")


class Started(msgspec.Struct, frozen=True, kw_only=True):
    execution: ExecutionRow
    command_id: int
    pos: int
    """The first notification's stream position (its ``seq`` is 1)."""


class ExecutionError(msgspec.Struct, frozen=True, kw_only=True):
    """A classified error record of an execution, with the execution's project."""

    id: uuid.UUID
    execution_id: uuid.UUID
    task_id: str | None
    stage: str
    classification: str
    message: str
    details: dict[str, Any]
    attempts: int
    created_at: datetime
    project_id: str


class StatusRow(msgspec.Struct, frozen=True, kw_only=True):
    """What the status API shows: the project's latest execution, its latest SETUP, its
    container's wait for a slot and its usage so far."""

    execution: ExecutionRow
    setup: SetupRow | None
    wait: SlotWaitRow | None
    usage: UsageSums


def new_execution_update(new: NewExecution) -> dict[str, Any]:
    """The ``execution-update`` payload of an execution as inserted (no task yet)."""
    return {"status": new.status, "stage": None, "taskId": None, "progress": 0,
            "branch": None, "completedTasks": 0, "totalTasks": 0}


class StartRaced(Exception):
    """Another start of the project committed while this one waited for the project's
    lock: this statement read the project before it (its snapshot), and the active-project
    index refused its execution. Nothing of it was written; a new statement sees the
    other start."""


class StartAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """What ``executions.start_checked`` did: ``started``, or why not: the project does
    not exist (``found`` false) or its latest execution is active (``latest_status``)."""

    found: bool
    latest_status: str | None
    """The status of the project's latest execution before this start (None: none ran)."""
    started: Started | None
