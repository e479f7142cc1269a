"""What an execution did, read back for reports (``devteam run``, ``devteam demo``): its
stage runs in the order they started, the per-task summaries kept in
``Event.task_context.tasks``, and its recorded errors. Reads only.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class StageRunRow(msgspec.Struct, frozen=True, kw_only=True):
    task_id: str
    stage: str
    pass_no: int
    attempt: int
    status: str
    duration_ms: int | None
    result: dict[str, Any] | None


async def stage_runs(session: AsyncSession, execution_id: uuid.UUID) -> list[StageRunRow]:
    """Every stage run of the execution (task-less ones too), oldest first."""
    rows = (
        await session.execute(
            text(
                "SELECT task_id, stage, pass_no, attempt, status, duration_ms, result "
                "FROM stage_runs WHERE execution_id = :e ORDER BY id"
            ),
            {"e": execution_id},
        )
    ).mappings().all()
    return [msgspec.convert(dict(r), StageRunRow) for r in rows]


async def task_summaries(session: AsyncSession, execution_id: uuid.UUID) -> dict[str, Any]:
    """``task_context.tasks`` of the execution's event: task id → what its stages recorded
    (``title``, ``status``, ``branch``, ``attempts``, ``mergeCommit``, ...)."""
    context = (
        await session.execute(
            text(
                "SELECT e.task_context FROM events e JOIN executions x ON x.event_id = e.id "
                "WHERE x.id = :e"
            ),
            {"e": execution_id},
        )
    ).scalar_one_or_none()
    tasks = (context or {}).get("tasks") or {}
    return dict(tasks) if isinstance(tasks, dict) else {}


async def error_line(session: AsyncSession, error_id: uuid.UUID) -> str | None:
    """``<classification>: <message>`` of a recorded (already redacted) error."""
    row = (
        await session.execute(
            text("SELECT classification, message FROM errors WHERE id = :id"), {"id": error_id}
        )
    ).one_or_none()
    return None if row is None else f"{row[0]}: {row[1]}"
