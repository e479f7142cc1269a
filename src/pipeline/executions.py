"""Reading and locking execution rows, and the status projection clients see."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from pipeline.lifecycle import Stage
from pipeline.store.executions import ExecutionRow
from pipeline.store.port import Tx

__all__ = ["ExecutionRow", "claim_fields", "get", "latest_for_project", "list_for",
           "project", "set_fields"]

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


async def get(
    db: Tx, execution_id: uuid.UUID, *, lock: bool = False
) -> ExecutionRow | None:
    return await db.executions.get(execution_id, lock=lock)


async def latest_for_project(
    db: Tx, project_id: str, *, lock: bool = False
) -> ExecutionRow | None:
    """The project's active execution if any, else its most recent one."""
    return await db.executions.latest_for_project(project_id, lock=lock)


async def list_for(
    db: Tx,
    *,
    user_id: str | None,
    project_ids: list[str] | None,
    customer_ids: list[str] | None,
    active_only: bool,
    limit: int,
) -> list[ExecutionRow]:
    """Executions newest first, of one user, or of the given projects/customers."""
    return await db.executions.list_for(
        user_id=user_id, project_ids=project_ids, customer_ids=customer_ids,
        active_only=active_only, limit=limit)


async def set_fields(db: Tx, execution_id: uuid.UUID, **fields: Any) -> None:
    """Update columns of an execution (``store.executions.SETTABLE`` only)."""
    await db.executions.set_fields(execution_id, fields)


async def project(db: Tx, project_id: str) -> dict[str, Any] | None:
    """A project's row (repository, default branch, task-list path, verification, quota)."""
    row = await db.projects.get(project_id)
    return None if row is None else msgspec.structs.asdict(row)
