"""Stage runs: one attempt of one stage of one task."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from pipeline.store.common import Conn, loads


class StageRunRow(msgspec.Struct, frozen=True, kw_only=True):
    task_id: str
    stage: str
    pass_no: int
    attempt: int
    status: str
    duration_ms: int | None
    result: dict[str, Any] | None


OF_EXECUTION = (
    "SELECT task_id, stage, pass_no, attempt, status, duration_ms, result "
    "FROM stage_runs WHERE execution_id = $1 ORDER BY id"
)

RUNNING = (
    "SELECT true FROM stage_runs WHERE execution_id = $1 AND status = 'running' "
    "AND lease_until > now() LIMIT 1"
)


DONE = (
    "SELECT true FROM stage_runs WHERE execution_id = $1 AND task_id = $2 "
    "AND stage = 'DONE' AND status = 'succeeded' LIMIT 1"
)
PASSES = (
    "SELECT coalesce(max(pass_no), 0) FROM stage_runs WHERE execution_id = $1 "
    "AND task_id = $2 AND stage = 'PREP'"
)


class PgStageRuns:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def running(self, execution_id: uuid.UUID) -> bool:
        """Whether a stage of the execution runs under a live lease."""
        return bool(await self.conn.fetchval(RUNNING, execution_id))

    async def done(self, execution_id: uuid.UUID, task_id: str) -> bool:
        """Whether the task's DONE stage succeeded in this execution."""
        return bool(await self.conn.fetchval(DONE, execution_id, task_id))

    async def passes(self, execution_id: uuid.UUID, task_id: str) -> int:
        """How many times the task was selected (its PREP passes) in this execution."""
        return int(await self.conn.fetchval(PASSES, execution_id, task_id))

    async def of_execution(self, execution_id: uuid.UUID) -> list[StageRunRow]:
        """Every stage run of the execution (task-less ones too), oldest first."""
        rows = await self.conn.fetch(OF_EXECUTION, execution_id)
        return [msgspec.convert({**dict(r), "result": loads(r["result"])}, StageRunRow)
                for r in rows]
