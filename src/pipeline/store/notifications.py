"""Notifications: what clients see, with a per-execution ``seq`` and a global ``pos``.

See ``pipeline.stream`` for the ordering argument (``pos`` taken under the one-row
``stream_position`` lock held until commit, after the execution's row lock).

The NOTIFY an append sends carries the rows it wrote (``StreamRow``s, as the table reads
them back) when they fit in one notification, else only the last position; ``notified``
decodes either. The table stays the source of truth: a listener that finds a gap between
what it has and a notification's first row reads the rows from the table (``after``).
Postgres delivers the notifications of committed transactions in commit order, which is
``pos`` order, so a listener that misses none sees them contiguous."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from pipeline.store.common import Conn, dumps

STREAM_CHANNEL = "devteam_stream"
NOTIFY_MAX = 7999
"""Bytes of a NOTIFY payload (Postgres refuses 8000 and more); longer: the position only."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Appended(msgspec.Struct, frozen=True, kw_only=True):
    """Where appended notifications went: ``first_pos``/``first_seq`` of the first, the
    rest consecutive."""

    first_pos: int
    first_seq: int
    customer_id: str
    project_id: str
    created_at: datetime


class StreamRow(msgspec.Struct, frozen=True, kw_only=True):
    """One notification as the stream sends it: the row, ``payload`` as its ``jsonb`` text,
    and the payload fields the frame's flat fields and filters need (as ``->>`` text)."""

    pos: int
    execution_id: str
    seq: int
    customer_id: str
    project_id: str
    type: str
    payload: msgspec.Raw
    level: str | None
    task_id: str | None
    status: str | None
    stage: str | None
    completed: str | None
    total: str | None
    created_at: datetime


class _NotifiedRow(msgspec.Struct, frozen=True, array_like=True):
    pos: int
    seq: int
    type: str
    payload: msgspec.Raw
    level: str | None
    task_id: str | None
    status: str | None
    stage: str | None
    completed: str | None
    total: str | None


class _Notified(msgspec.Struct, frozen=True, array_like=True):
    """A NOTIFY carrying rows: ``[execution_id, customer_id, project_id, created_at as
    microseconds since the epoch, [[pos, seq, type, payload, level, taskId, status, stage,
    completedTasks, totalTasks], ...]]``."""

    execution_id: str
    customer_id: str
    project_id: str
    created_us: int
    rows: list[_NotifiedRow]


_NOTIFIED = msgspec.json.Decoder(_Notified)


def notified(payload: str) -> tuple[int, list[StreamRow]]:
    """A NOTIFY's payload on ``STREAM_CHANNEL``: the last position it announces and the
    rows it carries (none when they did not fit: read them with ``after``)."""
    if not payload.startswith("["):
        return int(payload), []
    note = _NOTIFIED.decode(payload)
    created_at = _EPOCH + timedelta(microseconds=note.created_us)
    rows = [StreamRow(pos=r.pos, execution_id=note.execution_id, seq=r.seq,
                      customer_id=note.customer_id, project_id=note.project_id, type=r.type,
                      payload=r.payload, level=r.level, task_id=r.task_id, status=r.status,
                      stage=r.stage, completed=r.completed, total=r.total,
                      created_at=created_at) for r in note.rows]
    return rows[-1].pos, rows


_FIELDS = {"level": "level", "task_id": "taskId", "status": "status", "stage": "stage",
           "completed": "completedTasks", "total": "totalTasks"}
"""``StreamRow``'s payload fields (in its order) and their keys in the payload."""


def _fields(payload: str, *, named: bool) -> str:
    return ", ".join(f"{payload}->>'{key}'" + (f" AS {name}" if named else "")
                     for name, key in _FIELDS.items())


SELECT_ROWS = (
    "SELECT pos, execution_id::text AS execution_id, seq, customer_id, project_id, type, "
    f"payload::text AS payload, {_fields('payload', named=True)}, created_at "
    "FROM notifications "
)
AFTER = f"{SELECT_ROWS}WHERE pos > $1 ORDER BY pos LIMIT $2"
HEAD = "SELECT pos FROM stream_position WHERE id = 1"


def _page(scope: str) -> str:
    """Rows ``$1 < pos <= $2`` in ``scope``, oldest first, at most ``$3``; and retention's
    watermark (``pruned_pos``) read in the same snapshot (one row with null row fields
    when there is none)."""
    return ("SELECT w.pruned_pos, n.* FROM stream_position w LEFT JOIN LATERAL "
            f"({SELECT_ROWS}WHERE pos > $1 AND pos <= $2{scope} ORDER BY pos LIMIT $3) n "
            "ON true WHERE w.id = 1")


PAGE_ALL = _page("")
PAGE_PROJECTS = _page(" AND project_id = ANY($4::text[])")
PAGE_SCOPE = _page(" AND (project_id = ANY($4::text[]) OR customer_id = ANY($5::text[]))")

APPEND = (
    # The execution's row is locked (x) before the stream position's (p): p's UPDATE is
    # gated on x, so x runs first, as when they were two statements.
    "WITH x AS (UPDATE executions SET last_seq = last_seq + $2, updated_at = now(), "
    "last_update = coalesce($3::jsonb, last_update) WHERE id = $1 "
    "RETURNING last_seq, customer_id, project_id), "
    "p AS (UPDATE stream_position SET pos = pos + $2 WHERE id = 1 "
    "AND EXISTS (SELECT FROM x) RETURNING pos), "
    "ins AS (INSERT INTO notifications "
    "(pos, execution_id, seq, customer_id, project_id, type, payload, created_at) "
    "SELECT p.pos - $2 + f.ord, $1, x.last_seq - $2 + f.ord, x.customer_id, x.project_id, "
    "f.type, f.payload::jsonb, $4::timestamptz FROM p, x, "
    "unnest($5::text[], $6::text[]) WITH ORDINALITY AS f(type, payload, ord) "
    "RETURNING pos, seq, type, payload), "
    # the NOTIFY carries the rows as written (see _Notified), or the last position only
    "n AS (SELECT json_build_array($1::uuid, x.customer_id, x.project_id, "
    "(extract(epoch FROM $4::timestamptz) * 1000000)::bigint, "
    "json_agg(json_build_array(i.pos, i.seq, i.type, i.payload, "
    f"{_fields('i.payload', named=False)}) ORDER BY i.pos))::text AS rows "
    "FROM ins i, x GROUP BY x.customer_id, x.project_id) "
    "SELECT p.pos AS last_pos, x.last_seq, x.customer_id, x.project_id, "
    f"pg_notify('{STREAM_CHANNEL}', CASE WHEN octet_length(n.rows) <= {NOTIFY_MAX} "
    "THEN n.rows ELSE p.pos::text END) FROM p, x, n"
)


def stream_row(record: Any) -> StreamRow:
    """A row of ``SELECT_ROWS``."""
    return StreamRow(
        pos=record["pos"], execution_id=record["execution_id"], seq=record["seq"],
        customer_id=record["customer_id"], project_id=record["project_id"],
        type=record["type"], payload=msgspec.Raw(record["payload"].encode()),
        level=record["level"], task_id=record["task_id"], status=record["status"],
        stage=record["stage"], completed=record["completed"], total=record["total"],
        created_at=record["created_at"])


class PgNotifications:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def append(
        self,
        execution_id: uuid.UUID,
        frames: list[tuple[str, dict[str, Any]]],
        *,
        created_at: datetime,
        last_update: Any = None,
    ) -> Appended:
        """Append ``(type, payload)`` rows for one execution; ``last_update`` (unless
        None) is remembered as the last ``execution-update`` sent. One statement: the
        execution's ``seq`` (its row locked first), positions, rows and NOTIFY."""
        n = len(frames)
        record = await self.conn.fetchrow(
            APPEND, execution_id, n, None if last_update is None else dumps(last_update),
            created_at, [kind for kind, _ in frames], [dumps(payload) for _, payload in frames])
        if record is None:
            raise LookupError(f"no execution {execution_id}")
        return Appended(first_pos=int(record["last_pos"]) - n + 1,
                        first_seq=int(record["last_seq"]) - n + 1,
                        customer_id=record["customer_id"], project_id=record["project_id"],
                        created_at=created_at)

    async def head(self, *, seconds: float | None = None) -> int:
        """The last position committed (``seconds``: the query's timeout)."""
        return int(await self.conn.fetchval(HEAD, timeout=seconds))

    async def after(self, pos: int, limit: int, *, seconds: float | None = None
                    ) -> list[StreamRow]:
        """The rows after ``pos``, oldest first, at most ``limit`` (``seconds``: the
        query's timeout)."""
        return [stream_row(r) for r in await self.conn.fetch(AFTER, pos, limit,
                                                              timeout=seconds)]

    async def page(self, after: int, upto: int, limit: int, *,
                   projects: list[str] | None = None, customers: list[str] | None = None,
                   seconds: float | None = None) -> tuple[list[StreamRow], int]:
        """The rows ``after < pos <= upto`` of these ``projects`` or ``customers`` (both
        None: every row), oldest first, at most ``limit``; and retention's watermark as of
        the same snapshot (``seconds``: the query's timeout)."""
        if projects is None and customers is None:
            records = await self.conn.fetch(PAGE_ALL, after, upto, limit, timeout=seconds)
        elif customers is None:
            records = await self.conn.fetch(PAGE_PROJECTS, after, upto, limit, projects,
                                            timeout=seconds)
        else:
            records = await self.conn.fetch(PAGE_SCOPE, after, upto, limit, projects or [],
                                            customers, timeout=seconds)
        pruned = int(records[0]["pruned_pos"]) if records else 0
        return [stream_row(r) for r in records if r["pos"] is not None], pruned
