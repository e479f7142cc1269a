"""What one execution's detail is read from (the dashboard's execution view): its tasks'
summaries in the event's ``task_context``, its stage runs (durations, usage, VERIFY's
criteria) and its error records."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from pipeline.store.common import Conn, loads

MAX_STAGE_RUNS = 20_000
"""Stage runs read per execution: far beyond any real run, a bound on a pathological one."""
MAX_ERRORS = 200
"""Error records read, newest first; ``DetailParts.error_count`` counts them all."""

TASKS = "SELECT task_context -> 'tasks' FROM events WHERE id = $1"

RUNS = """
    SELECT task_id, stage, attempt, status, duration_ms, usage,
           CASE WHEN stage = 'VERIFY' THEN result -> 'results' END AS criteria
    FROM stage_runs WHERE execution_id = $1 ORDER BY id LIMIT $2
"""

ERRORS = """
    SELECT id, task_id, stage, classification, message, attempts, created_at,
           count(*) OVER () AS total
    FROM errors WHERE execution_id = $1 ORDER BY created_at DESC, id LIMIT $2
"""


class StageRunUse(msgspec.Struct, frozen=True, kw_only=True):
    """One stage run as the detail shows it."""

    task_id: str
    stage: str
    attempt: int
    status: str
    duration_ms: int | None
    usage: dict[str, Any] | None
    criteria: dict[str, Any] | None
    """VERIFY's results per criterion (``{passed, actual, required, detail}``), else None."""


class ErrorRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    task_id: str | None
    stage: str
    classification: str
    message: str
    attempts: int
    created_at: datetime


class DetailParts(msgspec.Struct, frozen=True, kw_only=True):
    tasks: dict[str, Any]
    """The event's ``task_context.tasks``: what each stage said about its task."""
    runs: list[StageRunUse]
    """In the order they were created, at most ``MAX_STAGE_RUNS``."""
    errors: list[ErrorRecord]
    """Newest first, at most ``MAX_ERRORS``."""
    error_count: int


def _object(value: Any) -> dict[str, Any] | None:
    value = loads(value)
    return value if isinstance(value, dict) else None


def run_of(record: Any) -> StageRunUse:
    """A stage run from a row (asyncpg's record or the memory store's dict)."""
    return StageRunUse(
        task_id=str(record["task_id"]), stage=str(record["stage"]),
        attempt=int(record["attempt"]), status=str(record["status"]),
        duration_ms=record["duration_ms"], usage=_object(record["usage"]),
        criteria=_object(record["criteria"]),
    )


def error_of(record: Any) -> ErrorRecord:
    return ErrorRecord(
        id=record["id"], task_id=record["task_id"], stage=str(record["stage"]),
        classification=str(record["classification"]), message=str(record["message"]),
        attempts=int(record["attempts"]), created_at=record["created_at"],
    )


class PgDetails:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def of_execution(self, execution_id: uuid.UUID, event_id: uuid.UUID) -> DetailParts:
        """The task summaries of ``event_id`` and the stage runs and errors of
        ``execution_id`` (the execution that event started)."""
        tasks = _object(await self.conn.fetchval(TASKS, event_id)) or {}
        runs = await self.conn.fetch(RUNS, execution_id, MAX_STAGE_RUNS)
        errors = await self.conn.fetch(ERRORS, execution_id, MAX_ERRORS)
        return DetailParts(
            tasks=tasks, runs=[run_of(r) for r in runs], errors=[error_of(r) for r in errors],
            error_count=int(errors[0]["total"]) if errors else 0,
        )
