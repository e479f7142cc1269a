"""Stage runs: one attempt of one stage of one task."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from pipeline.store.common import Conn, dumps, loads


class StageRunRow(msgspec.Struct, frozen=True, kw_only=True):
    task_id: str
    stage: str
    pass_no: int
    attempt: int
    status: str
    duration_ms: int | None
    result: dict[str, Any] | None


class RunKey(msgspec.Struct, frozen=True, kw_only=True):
    """What identifies a stage run: ``(execution, task, stage, pass, attempt)``."""

    execution_id: uuid.UUID
    task_id: str
    stage: str
    pass_no: int = 1
    attempt: int = 1


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """A stage run a worker holds the lease of, and how many times it was claimed."""

    id: int
    claims: int


class Finished(msgspec.Struct, frozen=True, kw_only=True):
    """What a stage run ended with (``result``, ``error`` and ``usage`` stored as JSON)."""

    status: str
    duration_ms: int
    result: Any
    error: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None


CLAIM = (
    "INSERT INTO stage_runs (execution_id, task_id, stage, pass_no, attempt, status, "
    "command_id, lease_owner, lease_until) "
    "VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, now() + make_interval(secs => $8)) "
    "ON CONFLICT (execution_id, task_id, stage, pass_no, attempt) DO UPDATE "
    "SET status = 'running', lease_owner = $7, command_id = $6, "
    "lease_until = now() + make_interval(secs => $8), claims = stage_runs.claims + 1, "
    "started_at = now() "
    "WHERE stage_runs.status = 'retrying' "
    "OR (stage_runs.status = 'running' AND stage_runs.lease_until <= now()) "
    "RETURNING id, claims"
)
STATUS = (
    "SELECT status FROM stage_runs WHERE execution_id = $1 AND task_id = $2 AND stage = $3 "
    "AND pass_no = $4 AND attempt = $5"
)
RENEW = (
    "UPDATE stage_runs SET lease_until = now() + make_interval(secs => $3) "
    "WHERE id = $1 AND lease_owner = $2 AND status = 'running' "
    "RETURNING (SELECT status FROM executions WHERE id = stage_runs.execution_id) "
    "AS execution_status"
)
FINISH = (
    "UPDATE stage_runs SET status = $3::varchar, finished_at = now(), duration_ms = $4, "
    "result = $5::jsonb, error = $6::jsonb, usage = $7::jsonb, "
    "lease_owner = CASE WHEN $3::varchar = 'retrying' THEN NULL ELSE lease_owner END, "
    "lease_until = CASE WHEN $3::varchar = 'retrying' THEN NULL ELSE lease_until END "
    "WHERE id = $1 AND lease_owner = $2 AND status = 'running' RETURNING started_at"
)
ATTEMPTS = (
    "SELECT count(*) FROM stage_runs WHERE execution_id = $1 AND task_id = $2 AND stage = $3"
)
RESULT = (
    "SELECT result FROM stage_runs WHERE execution_id = $1 AND task_id = $2 AND stage = $3 "
    "AND pass_no = $4 AND status IN ('succeeded', 'failed') "
    "AND ($5::int IS NULL OR attempt = $5) ORDER BY attempt DESC, id DESC LIMIT 1"
)
SELECTION = (
    "SELECT result FROM stage_runs WHERE execution_id = $1 AND stage = 'SELECT' "
    "AND status = 'succeeded' AND result->'task'->>'id' = $2 ORDER BY id DESC LIMIT 1"
)
SELECTS = "SELECT count(*) FROM stage_runs WHERE execution_id = $1 AND stage = 'SELECT'"
MEASURES = (
    "SELECT coalesce(result->'measures', result->'baseline'->'measures') FROM stage_runs "
    "WHERE execution_id = $1 AND status = 'succeeded' AND ("
    "(stage = 'VERIFY' AND result ? 'measures') OR "
    "(stage = 'SETUP' AND result->'baseline' ? 'measures')) ORDER BY id DESC LIMIT 1"
)
BASELINE = (
    "SELECT result->'baseline' FROM stage_runs WHERE execution_id = $1 "
    "AND stage = 'SETUP' AND status = 'succeeded' AND result->'baseline'->>'key' = $2 "
    "AND result->'baseline' ? 'measures' ORDER BY id DESC LIMIT 1"
)

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

    async def claim(self, key: RunKey, *, command_id: int, owner: str,
                    lease_seconds: float) -> Claim | None:
        """Take the run for ``owner`` with a lease: a new key is inserted, an existing one
        taken over only when it waits for a retry or its lease expired; None: it is
        finished or held (this delivery is a duplicate)."""
        r = await self.conn.fetchrow(CLAIM, key.execution_id, key.task_id, key.stage,
                                     key.pass_no, key.attempt, command_id, owner,
                                     float(lease_seconds))
        return None if r is None else Claim(id=int(r["id"]), claims=int(r["claims"]))

    async def status(self, key: RunKey) -> str | None:
        """The run's status; None when there is no such run."""
        value = await self.conn.fetchval(STATUS, key.execution_id, key.task_id, key.stage,
                                         key.pass_no, key.attempt)
        return None if value is None else str(value)

    async def renew(self, run_id: int, owner: str, lease_seconds: float) -> str | None:
        """Extend the lease ``owner`` holds on a running run: its execution's status, or
        None when the lease is lost (another owner, or the run is no longer running)."""
        r = await self.conn.fetchrow(RENEW, run_id, owner, float(lease_seconds))
        return None if r is None else str(r["execution_status"])

    async def finish(self, run_id: int, owner: str, done: Finished) -> datetime | None:
        """Record how a running run ended if ``owner`` still holds it (a ``retrying`` one
        gives its lease up): when it started, or None when the lease was lost."""
        value: datetime | None = await self.conn.fetchval(
            FINISH, run_id, owner, done.status, done.duration_ms, dumps(done.result),
            None if done.error is None else dumps(done.error),
            None if done.usage is None else dumps(done.usage))
        return value

    async def attempts(self, execution_id: uuid.UUID, task_id: str, stage: str) -> int:
        """How many runs of the task's stage this execution has (every pass and attempt)."""
        return int(await self.conn.fetchval(ATTEMPTS, execution_id, task_id, stage))

    async def result(self, execution_id: uuid.UUID, task_id: str, stage: str, pass_no: int,
                     attempt: int | None = None) -> dict[str, Any] | None:
        """The result of the latest ended (succeeded or failed) run of the task's stage in
        pass ``pass_no``: of ``attempt``, or of the latest attempt when None."""
        value = loads(await self.conn.fetchval(RESULT, execution_id, task_id, stage, pass_no,
                                               attempt))
        return dict(value) if value else None

    async def selection(self, execution_id: uuid.UUID, task_id: str) -> dict[str, Any] | None:
        """The result of the latest succeeded SELECT that picked ``task_id``."""
        value = loads(await self.conn.fetchval(SELECTION, execution_id, task_id))
        return dict(value) if value else None

    async def selects(self, execution_id: uuid.UUID) -> int:
        """How many SELECT runs the execution has."""
        return int(await self.conn.fetchval(SELECTS, execution_id))

    async def latest_measures(self, execution_id: uuid.UUID) -> dict[str, Any] | None:
        """What the latest verified state measured: the ``measures`` of the last succeeded
        VERIFY or SETUP baseline that has them."""
        value = loads(await self.conn.fetchval(MEASURES, execution_id))
        return dict(value) if value else None

    async def baseline(self, execution_id: uuid.UUID, key: str) -> dict[str, Any] | None:
        """The latest measured baseline a succeeded SETUP recorded under ``key``."""
        value = loads(await self.conn.fetchval(BASELINE, execution_id, key))
        return dict(value) if value else None
