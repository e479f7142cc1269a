"""What an execution did, read back for reports (``devteam run``, ``devteam demo``): its
stage runs in the order they started, the per-task summaries kept in
``Event.task_context.tasks``, and its recorded errors. Reads only.
"""

from __future__ import annotations

import uuid
from typing import Any

from pipeline.store.port import Tx
from pipeline.store.stage_runs import StageRunRow


async def stage_runs(db: Tx, execution_id: uuid.UUID) -> list[StageRunRow]:
    """Every stage run of the execution (task-less ones too), oldest first."""
    return await db.stage_runs.of_execution(execution_id)


async def task_summaries(db: Tx, execution_id: uuid.UUID) -> dict[str, Any]:
    """``task_context.tasks`` of the execution's event: task id → what its stages recorded
    (``title``, ``status``, ``branch``, ``attempts``, ``mergeCommit``, ...)."""
    return await db.executions.task_summaries(execution_id)


async def error_line(db: Tx, error_id: uuid.UUID) -> str | None:
    """``<classification>: <message>`` of a recorded (already redacted) error."""
    return await db.executions.error_line(error_id)


__all__ = ["StageRunRow", "error_line", "stage_runs", "task_summaries"]
