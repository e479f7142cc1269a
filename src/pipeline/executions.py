"""Reading and locking execution rows, and the status projection clients see."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pipeline.lifecycle import Stage, Status
from pipeline.stream import iso

_COLUMNS = (
    "id, project_id, customer_id, event_id, user_id, status, pause_reason, stop_point, "
    "single_task_id, current_task_id, current_stage, branch, completed_tasks, total_tasks, "
    "last_seq, pending_command, error_id, correlation_id, started_at, updated_at, finished_at"
)


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
        if self.status == Status.COMPLETED:
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
        if self.status == Status.PAUSED and self.pause_reason:
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
        if self.status == Status.PAUSED and self.pause_reason:
            view["pauseReason"] = self.pause_reason
        if self.stop_point:
            view["stopPoint"] = self.stop_point
        if self.finished_at is not None:
            view["finishedAt"] = iso(self.finished_at)
        return view

    def summary(self) -> dict[str, Any]:
        """An entry of the active/history lists."""
        return {**self.status_view(), "userId": self.user_id}


def claim_fields(stage: str, task_id: str, current_task_id: str | None) -> dict[str, Any]:
    """The execution's columns when a worker claims ``stage`` of ``task_id``.

    SELECT runs between tasks: no current task, no branch. A stage of another task than
    the current one clears the branch until that task's PREP names its own, so a frame
    never shows the previous task's branch as the current one's.
    """
    fields: dict[str, Any] = {"current_stage": stage}
    if stage == Stage.SELECT:
        fields.update(current_task_id=None, branch=None)
    elif task_id and not task_id.startswith("#"):
        fields["current_task_id"] = task_id
        if task_id != current_task_id:
            fields["branch"] = None
    return fields


def _row(mapping: Any) -> ExecutionRow:
    return msgspec.convert(dict(mapping), ExecutionRow)


async def get(
    session: AsyncSession, execution_id: uuid.UUID, *, lock: bool = False
) -> ExecutionRow | None:
    sql = f"SELECT {_COLUMNS} FROM executions WHERE id = :id" + (" FOR UPDATE" if lock else "")
    row = (await session.execute(text(sql), {"id": execution_id})).mappings().one_or_none()
    return None if row is None else _row(row)


async def latest_for_project(
    session: AsyncSession, project_id: str, *, lock: bool = False
) -> ExecutionRow | None:
    """The project's active execution if any, else its most recent one."""
    sql = (
        f"SELECT {_COLUMNS} FROM executions WHERE project_id = :p "
        "ORDER BY (status IN ('initializing','running','paused','stopping')) DESC, "
        "started_at DESC LIMIT 1" + (" FOR UPDATE" if lock else "")
    )
    row = (await session.execute(text(sql), {"p": project_id})).mappings().one_or_none()
    return None if row is None else _row(row)


async def setup_of(session: AsyncSession, execution_id: uuid.UUID) -> dict[str, Any] | None:
    """The execution's latest SETUP: ``{taskId, status, tool, cached, seconds, bytes,
    durationMs}`` (cache hit or miss, how long), or None before the first one finished."""
    row = (await session.execute(text(
        "SELECT task_id, status, duration_ms, result, error FROM stage_runs "
        "WHERE execution_id = :e AND stage = 'SETUP' AND status IN ('succeeded', 'failed') "
        "ORDER BY id DESC LIMIT 1"), {"e": execution_id})).one_or_none()
    if row is None:
        return None
    result = dict(row[3] or {})
    view: dict[str, Any] = {
        "taskId": row[0], "status": row[1], "durationMs": row[2],
        "tool": result.get("tool"), "cached": bool(result.get("cached")),
        "seconds": result.get("seconds"), "bytes": result.get("bytes"),
    }
    if row[4]:
        view["error"] = str(dict(row[4]).get("message", ""))
    return view


async def list_for(
    session: AsyncSession,
    *,
    user_id: str | None,
    project_ids: list[str] | None,
    customer_ids: list[str] | None,
    active_only: bool,
    limit: int,
) -> list[ExecutionRow]:
    """Executions newest first, of one user, or of the given projects/customers."""
    where = []
    params: dict[str, Any] = {"limit": limit}
    if user_id is not None:
        where.append("user_id = :u")
        params["u"] = user_id
    scope = []
    if project_ids is not None:
        scope.append("project_id = ANY(:pids)")
        params["pids"] = project_ids
    if customer_ids is not None:
        scope.append("customer_id = ANY(:cids)")
        params["cids"] = customer_ids
    if scope:
        where.append("(" + " OR ".join(scope) + ")")
    if active_only:
        where.append("status IN ('initializing','running','paused','stopping')")
    sql = f"SELECT {_COLUMNS} FROM executions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY started_at DESC, id LIMIT :limit"
    rows = (await session.execute(text(sql), params)).mappings().all()
    return [_row(r) for r in rows]


async def set_fields(session: AsyncSession, execution_id: uuid.UUID, **fields: Any) -> None:
    """Update columns of an execution (names are our own constants, never input)."""
    if not fields:
        return
    assignments = ", ".join(f"{name} = :{name}" for name in fields)
    params = dict(fields)
    if "pending_command" in params and params["pending_command"] is not None:
        assignments = assignments.replace(
            "pending_command = :pending_command",
            "pending_command = CAST(:pending_command AS jsonb)",
        )
        params["pending_command"] = msgspec.json.encode(params["pending_command"]).decode()
    params["_id"] = execution_id
    await session.execute(
        text(f"UPDATE executions SET {assignments}, updated_at = now() WHERE id = :_id"), params
    )


async def project(session: AsyncSession, project_id: str) -> dict[str, Any] | None:
    """A project's row (repository, default branch, task-list path, verification, quota)."""
    row = (
        await session.execute(
            text(
                "SELECT project_id, customer_id, repository_url, default_branch, "
                "task_list_path, verification, quota FROM projects WHERE project_id = :p"
            ),
            {"p": project_id},
        )
    ).mappings().one_or_none()
    return None if row is None else dict(row)
