"""Executions and the events that start them: named queries (the rows are in
``execution_rows``, re-exported here)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from pipeline.store.common import Conn, dumps, loads, safe_text
from pipeline.store.execution_rows import (
    EventRow,
    ExecutionError,
    ExecutionRow,
    NewError,
    NewEvent,
    NewExecution,
    NewStart,
    PriorStart,
    SetupRow,
    SlotWaitRow,
    StartAttempt,
    Started,
    StartRaced,
    StatusRow,
    new_execution_update,
)
from pipeline.store.notifications import _FIELDS, NOTIFY_MAX, STREAM_CHANNEL
from pipeline.store.outbox import OUTBOX_CHANNEL
from pipeline.store.usage import SUMS, UsageSums

__all__ = [
    "ACTIVE",
    "EventRow",
    "ExecutionError",
    "ExecutionRow",
    "NewError",
    "NewEvent",
    "NewExecution",
    "NewStart",
    "PgExecutions",
    "PriorStart",
    "SetupRow",
    "SlotWaitRow",
    "StartAttempt",
    "StartRaced",
    "Started",
    "StatusRow",
    "new_execution_update",
]

ACTIVE = ("initializing", "running", "paused", "stopping")
ACTIVE_PROJECT_INDEX = "uq_executions_active_project"
"""The unique index that allows one active execution per project."""

COLUMNS = (
    "id, project_id, customer_id, event_id, user_id, status, pause_reason, stop_point, "
    "single_task_id, current_task_id, current_stage, branch, completed_tasks, total_tasks, "
    "last_seq, pending_command, error_id, correlation_id, started_at, updated_at, finished_at"
)


def execution_of(record: Any) -> ExecutionRow:
    """An ``ExecutionRow`` from a record with the ``COLUMNS`` (asyncpg or SQLAlchemy)."""
    values = dict(record)
    values["pending_command"] = loads(values["pending_command"])
    return msgspec.convert(values, ExecutionRow)


_LATEST_ORDER = (
    "ORDER BY (status IN ('initializing','running','paused','stopping')) DESC, "
    "started_at DESC LIMIT 1"
)
GET = f"SELECT {COLUMNS} FROM executions WHERE id = $1"
LATEST_FOR_PROJECT = f"SELECT {COLUMNS} FROM executions WHERE project_id = $1 {_LATEST_ORDER}"
INSERT = (
    "INSERT INTO executions (id, project_id, customer_id, event_id, user_id, status, "
    "stop_point, single_task_id, correlation_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
    f"RETURNING {COLUMNS}"
)
INSERT_EVENT = (
    "INSERT INTO events (id, workflow_type, data, task_context, project_id, user_id, "
    "idempotency_key, idempotency_hash, correlation_id) VALUES ($1, $2, $3::jsonb, $4::jsonb, "
    "$5, $6, $7, $8, $9)"
)
EVENT = (
    "SELECT e.id, e.workflow_type, e.data, e.task_context, e.created_at, e.updated_at, "
    "e.correlation_id, e.project_id, x.id AS execution_id FROM events e "
    "LEFT JOIN executions x ON x.event_id = e.id WHERE e.id = $1"
)
PRIOR_START = (
    "SELECT e.id AS event_id, x.id AS execution_id, e.correlation_id, "
    "(SELECT min(o.id) FROM outbox o WHERE o.execution_id = x.id) AS command_id, "
    "e.idempotency_hash FROM events e JOIN executions x ON x.event_id = e.id "
    "WHERE e.user_id = $1 AND e.project_id = $2 AND e.idempotency_key = $3"
)


def _first_notify(pos: str) -> str:
    """The stream NOTIFY of a start's first notification (position ``pos``): it carries
    the row as an append's does (``notifications.notified``: execution, customer, project,
    created_at in microseconds, then pos, seq, type, payload and its fields), so a hub
    publishes it without reading the table; the position only if it does not fit."""
    fields = ", ".join(f"$15::jsonb->>'{key}'" for key in _FIELDS.values())
    note = ("json_build_array($10::uuid, $11::text, $5::text, "
            "(extract(epoch FROM $22::timestamptz) * 1000000)::bigint, json_build_array("
            f"json_build_array({pos}, 1, $21::text, $15::jsonb, {fields})))::text")
    return (f"pg_notify('{STREAM_CHANNEL}', CASE WHEN octet_length({note}) <= {NOTIFY_MAX} "
            f"THEN {note} ELSE {pos}::text END)")


START_CHECKED = (
    # A start (event, execution, first command, audit row, first notification, parent rows
    # before children: foreign keys are checked at the statement's end), gated in the same
    # statement: the project's row locked
    # (starts of one project queue here), and its latest execution not active (the rule
    # of lifecycle's INITIALIZE and of the uq_executions_active_project index). Nothing is
    # written when the gate is closed; the row then says why (found, latest_status).
    # One statement, so it may run on its own, committed by itself: the stream position's
    # row lock is then held from its UPDATE to the commit, never across a client round trip.
    "WITH p AS (SELECT project_id FROM projects WHERE project_id = $5::text FOR UPDATE), "
    f"l AS (SELECT status FROM executions WHERE project_id = $5::text {_LATEST_ORDER}), "
    "g AS (SELECT FROM p WHERE NOT EXISTS (SELECT FROM l WHERE l.status IN "
    "('initializing','running','paused','stopping'))), "
    "e AS (INSERT INTO events (id, workflow_type, data, task_context, project_id, "
    "user_id, idempotency_key, idempotency_hash, correlation_id) SELECT $1::uuid, $2::text, "
    "$3::jsonb, $4::jsonb, $5, $6::text, $7::text, $8::text, $9::text FROM g), "
    "x AS (INSERT INTO executions (id, project_id, customer_id, event_id, user_id, status, "
    "stop_point, single_task_id, correlation_id, last_seq, last_update) SELECT $10::uuid, "
    "$5, $11::text, $1, $6, $12::text, $13::text, $14::text, $9, 1, $15::jsonb FROM g "
    f"RETURNING {COLUMNS}), "
    "c AS (INSERT INTO outbox (execution_id, customer_id, actor, payload, correlation_id, "
    "available_at) SELECT $10, $11, $16::text, $17::jsonb, $9, "
    "now() + make_interval(secs => $18::float8) FROM x RETURNING id), "
    "a AS (INSERT INTO audit_log (user_id, action, project_id, execution_id, "
    "correlation_id, details) SELECT $6, $19::text, $5, $10, $9, $20::jsonb FROM x), "
    "s AS (UPDATE stream_position SET pos = pos + 1 WHERE id = 1 "
    "AND EXISTS (SELECT FROM x) RETURNING pos), "
    "n AS (INSERT INTO notifications (pos, execution_id, seq, customer_id, project_id, "
    "type, payload, created_at) SELECT s.pos, $10, 1, $11, $5, $21::text, $15::jsonb, "
    "$22::timestamptz FROM s) "
    "SELECT EXISTS (SELECT FROM p) AS found, (SELECT status FROM l) AS latest_status, "
    "x.*, c.id AS command_id, s.pos AS pos, "
    f"CASE WHEN s.pos IS NOT NULL THEN pg_notify('{OUTBOX_CHANNEL}', '') END "
    "AS outbox_notified, "
    f"CASE WHEN s.pos IS NOT NULL THEN {_first_notify('s.pos')} END "
    "AS stream_notified FROM (SELECT) o LEFT JOIN x ON true LEFT JOIN c ON true "
    "LEFT JOIN s ON true"
)
SETTABLE = frozenset(c.strip() for c in COLUMNS.split(",")) - {
    "id", "project_id", "customer_id", "event_id", "user_id", "correlation_id", "started_at",
    "updated_at", "last_seq"}
"""Columns ``set_fields`` may change (``last_seq`` belongs to the notification append)."""


def set_sql(names: list[str]) -> str:
    """``UPDATE executions`` of ``names`` ($2...) for id $1; ValueError for another name."""
    unknown = sorted(set(names) - SETTABLE)
    if unknown:
        raise ValueError(f"not a settable execution column: {', '.join(unknown)}")
    assignments = ", ".join(
        f"{name} = ${i}::jsonb" if name == "pending_command" else f"{name} = ${i}"
        for i, name in enumerate(names, start=2))
    return f"UPDATE executions SET {assignments}, updated_at = now() WHERE id = $1"


def list_for_sql(by_user: bool, scoped: bool, active_only: bool) -> str:
    """``list_for``'s statement with only the filters asked for ($1... in this order: the
    user, the project ids, the customer ids; the limit last). Each combination is a
    statement of its own, planned for its filters: one statement with every filter
    optional (``$1 IS NULL OR …``) would get a single plan for all of them under
    generic planning (``Store(generic_plans=True)``, the gateway's)."""
    where: list[str] = []
    n = 0
    if by_user:
        n += 1
        where.append(f"user_id = ${n}")
    if scoped:
        where.append(f"(project_id = ANY(${n + 1}::text[]) "
                     f"OR customer_id = ANY(${n + 2}::text[]))")
        n += 2
    if active_only:
        where.append("status IN ('initializing','running','paused','stopping')")
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    return f"SELECT {COLUMNS} FROM executions {clause}ORDER BY started_at DESC, id LIMIT ${n + 1}"


ERROR = (
    "SELECT r.id, r.execution_id, r.task_id, r.stage, r.classification, r.message, "
    "r.details, r.attempts, r.created_at, x.project_id FROM errors r "
    "JOIN executions x ON x.id = r.execution_id WHERE r.id = $1 AND r.execution_id = $2"
)
TASK_SUMMARIES = (
    "SELECT e.task_context -> 'tasks' FROM events e JOIN executions x ON x.event_id = e.id "
    "WHERE x.id = $1"
)
ERROR_LINE = "SELECT classification, message FROM errors WHERE id = $1"
RECORD_ERROR = (
    "INSERT INTO errors (id, execution_id, task_id, stage, classification, message, details, "
    "attempts) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)"
)
TASK_CONTEXT_FOR_UPDATE = "SELECT task_context FROM events WHERE id = $1 FOR UPDATE"
SET_TASK_CONTEXT = (
    "UPDATE events SET task_context = $2::jsonb, updated_at = now() WHERE id = $1"
)
LAST_UPDATE_FOR_UPDATE = "SELECT last_update FROM executions WHERE id = $1 FOR UPDATE"
ACTIVE_IDS = "SELECT id FROM executions WHERE status = ANY($1::text[])"
STATUS = f"""
    SELECT p.project_key, s.* FROM unnest($1::text[]) AS p(project_key), LATERAL (
    WITH x AS (SELECT {COLUMNS} FROM executions WHERE project_id = p.project_key
               {_LATEST_ORDER}),
    setup AS (
        SELECT s.task_id, s.status, s.duration_ms, s.result, s.error FROM stage_runs s, x
        WHERE s.execution_id = x.id AND s.stage = 'SETUP'
          AND s.status IN ('succeeded', 'failed')
        ORDER BY s.id DESC LIMIT 1
    ), mine AS (
        SELECT l.id, l.holder, l.customer_id, l.requested_at FROM sandbox_leases l, x
        WHERE l.execution_id = x.id::text AND l.granted_at IS NULL AND l.alive_until >= now()
        ORDER BY l.requested_at, l.id LIMIT 1
    ), wait AS (
        SELECT m.holder, m.requested_at,
               extract(epoch FROM now() - m.requested_at)::float8 AS seconds,
               (SELECT count(*) FROM sandbox_leases w
                 WHERE w.granted_at IS NULL AND w.alive_until >= now()
                   AND w.customer_id = m.customer_id
                   AND (w.requested_at, w.id) < (m.requested_at, m.id)) + 1 AS position,
               (SELECT count(*) FROM sandbox_leases
                 WHERE granted_at IS NULL AND alive_until >= now()) AS waiting,
               (SELECT count(*) FROM sandbox_leases
                 WHERE granted_at IS NOT NULL AND customer_id = m.customer_id)
                 AS customer_running,
               (SELECT count(*) FROM sandbox_leases WHERE granted_at IS NOT NULL) AS running
        FROM mine m
    ), used AS (
        SELECT {SUMS} FROM stage_runs r, x WHERE r.execution_id = x.id AND r.usage IS NOT NULL
    )
    SELECT x.*, row_to_json(used)::text AS usage,
           setup.task_id AS setup_task_id, setup.status AS setup_status,
           setup.duration_ms AS setup_duration_ms, setup.result AS setup_result,
           setup.error AS setup_error,
           wait.holder AS wait_holder, wait.requested_at AS wait_requested_at,
           wait.seconds AS wait_seconds, wait.position AS wait_position,
           wait.waiting AS wait_waiting, wait.customer_running AS wait_customer_running,
           wait.running AS wait_running
    FROM x LEFT JOIN setup ON true LEFT JOIN wait ON true, used
    ) s
"""
"""Each project's latest execution with its SETUP, slot wait and usage (``statuses``):
one statement for any number of projects, each looked up by the index as it would be
alone; a project that never ran has no row."""
_EXECUTION_KEYS = tuple(c.strip() for c in COLUMNS.split(","))


async def warm_status_reads(conn: Conn) -> None:
    """Run ``STATUS`` once, for no project, on a new connection (a ``Store``'s ``warm``).

    Its first run on a connection costs the server 3 to 5 ms of CPU (the statement
    parsed and planned, the catalog entries of the tables and indexes it reads loaded
    into the backend), twenty times a warm read. A gateway's pool grows under load, so
    that first run came with a burst of polls: a few new connections at once, each the
    first read of a batch, took the machine's cores from the gateway and held up every
    request behind them. Run when the connection opens, it is paid there, and the
    prepared statement stays in the connection's cache for the reads that follow."""
    await conn.fetch(STATUS, [])


def status_of(record: Any) -> StatusRow:
    values = dict(record)
    execution = execution_of({k: values[k] for k in _EXECUTION_KEYS})
    setup = None
    if values["setup_task_id"] is not None:
        setup = SetupRow(task_id=values["setup_task_id"], status=values["setup_status"],
                         duration_ms=values["setup_duration_ms"],
                         result=loads(values["setup_result"]),
                         error=loads(values["setup_error"]))
    wait = None
    if values["wait_holder"] is not None:
        wait = SlotWaitRow(holder=values["wait_holder"],
                           requested_at=values["wait_requested_at"],
                           seconds=float(values["wait_seconds"]),
                           position=int(values["wait_position"]),
                           waiting=int(values["wait_waiting"]),
                           customer_running=int(values["wait_customer_running"]),
                           running=int(values["wait_running"]))
    usage = msgspec.json.decode(values["usage"], type=UsageSums)
    return StatusRow(execution=execution, setup=setup, wait=wait, usage=usage)


def _start_params(new: NewStart) -> tuple[Any, ...]:
    """The parameters of ``START`` and ``START_CHECKED`` ($1...$22)."""
    ev, ex, cmd, audit = new.event, new.execution, new.command, new.audit
    return (ev.id, ev.workflow_type, dumps(ev.data), dumps(ev.task_context), ev.project_id,
            ev.user_id, ev.idempotency_key, ev.idempotency_hash, ev.correlation_id, ex.id,
            ex.customer_id, ex.status, ex.stop_point, ex.single_task_id, dumps(new.payload),
            cmd.actor, dumps(cmd.payload), float(cmd.delay_seconds), audit.action,
            dumps(audit.details), new.kind, new.created_at)


class PgExecutions:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def get(self, execution_id: uuid.UUID, *, lock: bool = False) -> ExecutionRow | None:
        record = await self.conn.fetchrow(GET + (" FOR UPDATE" if lock else ""), execution_id)
        return None if record is None else execution_of(record)

    async def latest_for_project(
        self, project_id: str, *, lock: bool = False
    ) -> ExecutionRow | None:
        sql = LATEST_FOR_PROJECT + (" FOR UPDATE" if lock else "")
        record = await self.conn.fetchrow(sql, project_id)
        return None if record is None else execution_of(record)

    async def insert(self, new: NewExecution) -> ExecutionRow:
        record = await self.conn.fetchrow(
            INSERT, new.id, new.project_id, new.customer_id, new.event_id, new.user_id,
            new.status, new.stop_point, new.single_task_id, new.correlation_id)
        return execution_of(record)

    async def insert_event(self, new: NewEvent) -> None:
        await self.conn.execute(
            INSERT_EVENT, new.id, new.workflow_type, dumps(new.data), dumps(new.task_context),
            new.project_id, new.user_id, new.idempotency_key, new.idempotency_hash,
            new.correlation_id)

    async def event(self, event_id: uuid.UUID) -> EventRow | None:
        record = await self.conn.fetchrow(EVENT, event_id)
        if record is None:
            return None
        values = dict(record)
        values["data"], values["task_context"] = loads(values["data"]), loads(
            values["task_context"])
        return msgspec.convert(values, EventRow)

    async def prior_start(self, user_id: str, project_id: str, key: str) -> PriorStart | None:
        record = await self.conn.fetchrow(PRIOR_START, user_id, project_id, key)
        return None if record is None else msgspec.convert(dict(record), PriorStart)

    async def start_checked(self, new: NewStart) -> StartAttempt:
        """Write a start (``NewStart``) if the project exists and its latest execution is not
        active, with the project's row locked: one statement (``StartAttempt`` says what
        happened); the relay and the stream are notified at commit."""
        new.check()
        try:
            record = await self.conn.fetchrow(START_CHECKED, *_start_params(new))
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == ACTIVE_PROJECT_INDEX:
                raise StartRaced(new.event.project_id) from exc
            raise
        values = dict(record)
        found, latest = bool(values.pop("found")), values.pop("latest_status")
        command_id, pos = values.pop("command_id"), values.pop("pos")
        del values["outbox_notified"], values["stream_notified"]
        if command_id is None:
            return StartAttempt(found=found, latest_status=latest, started=None)
        return StartAttempt(found=found, latest_status=latest, started=Started(
            execution=execution_of(values), command_id=int(command_id), pos=int(pos)))

    async def set_fields(self, execution_id: uuid.UUID, fields: dict[str, Any]) -> None:
        """Change columns of an execution (``SETTABLE`` only) and its ``updated_at``."""
        if not fields:
            return
        names = sorted(fields)
        values = [dumps(fields[n]) if n == "pending_command" and fields[n] is not None
                  else fields[n] for n in names]
        await self.conn.execute(set_sql(names), execution_id, *values)

    async def list_for(
        self,
        *,
        user_id: str | None,
        project_ids: list[str] | None,
        customer_ids: list[str] | None,
        active_only: bool,
        limit: int,
    ) -> list[ExecutionRow]:
        """Executions newest first: of one user (unless None), in the given projects or
        customers (unless both None), active only or all."""
        scoped = project_ids is not None or customer_ids is not None
        args: list[Any] = [user_id] if user_id is not None else []
        if scoped:
            args += [project_ids or [], customer_ids or []]
        sql = list_for_sql(user_id is not None, scoped, active_only)
        rows = await self.conn.fetch(sql, *args, limit)
        return [execution_of(r) for r in rows]

    async def error(
        self, execution_id: uuid.UUID, error_id: uuid.UUID
    ) -> ExecutionError | None:
        record = await self.conn.fetchrow(ERROR, error_id, execution_id)
        if record is None:
            return None
        return msgspec.convert({**dict(record), "details": loads(record["details"]) or {}},
                               ExecutionError)

    async def task_summaries(self, execution_id: uuid.UUID) -> dict[str, Any]:
        """``task_context.tasks`` of the execution's event ({} when none)."""
        tasks = loads(await self.conn.fetchval(TASK_SUMMARIES, execution_id))
        return dict(tasks) if isinstance(tasks, dict) else {}

    async def error_line(self, error_id: uuid.UUID) -> str | None:
        """``<classification>: <message>`` of a recorded (already redacted) error."""
        r = await self.conn.fetchrow(ERROR_LINE, error_id)
        return None if r is None else f"{r['classification']}: {r['message']}"

    async def record_error(self, new: NewError) -> None:
        """Store an error record of one of the execution's stage runs."""
        await self.conn.execute(RECORD_ERROR, new.id, new.execution_id, new.task_id,
                                new.stage, new.classification, safe_text(new.message),
                                dumps(new.details), new.attempts)

    async def lock_task_context(self, event_id: uuid.UUID) -> dict[str, Any]:
        """The event's ``task_context`` ({} when empty), its row locked until the
        transaction ends; LookupError when there is no such event."""
        record = await self.conn.fetchrow(TASK_CONTEXT_FOR_UPDATE, event_id)
        if record is None:
            raise LookupError(f"no event {event_id}")
        return dict(loads(record["task_context"]) or {})

    async def set_task_context(self, event_id: uuid.UUID, context: dict[str, Any]) -> None:
        """Replace the event's ``task_context``."""
        await self.conn.execute(SET_TASK_CONTEXT, event_id, dumps(context))

    async def active_ids(self) -> list[uuid.UUID]:
        """The executions that have not ended (the reaper spares their containers)."""
        return [r["id"] for r in await self.conn.fetch(ACTIVE_IDS, list(ACTIVE))]

    async def lock_last_update(self, execution_id: uuid.UUID) -> Any:
        """The last ``execution-update`` payload sent, the execution row locked."""
        return loads(await self.conn.fetchval(LAST_UPDATE_FOR_UPDATE, execution_id))

    async def statuses(self, project_ids: Sequence[str]) -> dict[str, StatusRow]:
        """Each project's latest execution, its latest SETUP, its slot wait and its
        usage, by project; one that never ran is left out. One statement for all."""
        records = await self.conn.fetch(STATUS, list(dict.fromkeys(project_ids)))
        return {r["project_key"]: status_of(r) for r in records}
