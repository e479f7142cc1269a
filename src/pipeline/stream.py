"""Appending notifications: per-execution ``seq`` and a global, commit-ordered ``pos``.

``seq`` is taken under the execution row's lock, so it is gapless per execution. ``pos``
is taken from the one-row ``stream_position`` table under its row lock, held until the
transaction commits: a transaction that got positions 11..12 cannot commit before the
one that got 10 has, so readers following ``pos`` see rows strictly in order and never
skip one. That lock is the price of a single cursor per client; ``append`` is therefore
the last statement of every transaction that notifies, so the lock is held for one round
trip plus the commit. NOTIFY is sent once per transaction with a pointer, never the data.

An ``execution-update`` identical to the last one sent for its execution is not appended
(the execution row keeps that payload in ``last_update``): a stage that ends where it
started, or a command that changes nothing a client sees, adds no frame.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pipeline import prd
from pipeline.frames import payload_of

STREAM_CHANNEL = "devteam_stream"

class Frame(msgspec.Struct, frozen=True, rename="camel", kw_only=True, omit_defaults=True):
    """One notification as clients see it (CONTRACTS "Live stream"): the envelope, the
    requirements' flat fields (``timestamp``, ``taskId``; ``status`` and ``progress`` on
    ``execution-update``, see ``pipeline.prd``) and the detailed ``payload``."""

    id: str
    type: str
    ts: str
    timestamp: str
    customer_id: str
    project_id: str
    execution_id: str
    task_id: str | None
    seq: int
    status: str | None = None
    progress: float | None = None
    payload: dict[str, Any]


def _normal(payload: dict[str, Any]) -> Any:
    """A payload as it reads back from JSON (tuples become lists, and so on)."""
    return msgspec.json.decode(msgspec.json.encode(payload))


def drop_repeated_updates(
    frames: Sequence[tuple[str, dict[str, Any]]], previous: dict[str, Any] | None
) -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    """``frames`` without each ``execution-update`` identical to the update before it
    (``previous`` is the last one already sent), and the last update kept (None when
    none was)."""
    kept: list[tuple[str, dict[str, Any]]] = []
    last: Any = previous
    newest: Any = None
    for kind, payload in frames:
        if kind == "execution-update":
            normal = _normal(payload)
            if normal == last:
                continue
            last = newest = normal
        kept.append((kind, payload))
    return kept, newest


def frame_fields(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The requirements' top-level fields of a frame, from its payload."""
    fields: dict[str, Any] = {"task_id": prd.task_of(payload.get("taskId"))}
    if kind == "execution-update":
        fields["status"], fields["progress"] = prd.update_fields(
            payload.get("status"), payload.get("stage"), payload.get("taskId"),
            payload.get("completedTasks"), payload.get("totalTasks"))
    return fields


def iso(ts: datetime) -> str:
    """ISO 8601 UTC with ``Z`` and milliseconds."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


async def append(
    session: AsyncSession,
    execution_id: uuid.UUID,
    frames: Sequence[tuple[str, dict[str, Any]]],
) -> list[Frame]:
    """Append ``(type, payload)`` notifications for one execution in the caller's transaction.

    Call it last in the transaction (see the module docstring). Returns the frames with
    their ids (cursor = ``pos``) and sequence numbers.
    """
    # every payload as its frame type encodes it; FramePayloadError if it is not one
    frames = [(kind, payload_of(kind, payload)) for kind, payload in frames]
    if not frames:
        return []
    remember = ""
    params: dict[str, Any] = {"id": execution_id}
    if any(kind == "execution-update" for kind, _ in frames):
        previous = (await session.execute(
            text("SELECT last_update FROM executions WHERE id = :id FOR UPDATE"),
            {"id": execution_id})).scalar_one()
        frames, newest = drop_repeated_updates(frames, previous)
        if not frames:
            return []
        if newest is not None:
            remember = ", last_update = CAST(:last_update AS jsonb)"
            params["last_update"] = msgspec.json.encode(newest).decode()
    n = len(frames)
    row = (
        await session.execute(
            text(
                f"UPDATE executions SET last_seq = last_seq + :n, updated_at = now(){remember} "
                "WHERE id = :id RETURNING last_seq, customer_id, project_id"
            ),
            {**params, "n": n},
        )
    ).one()
    last_seq, customer_id, project_id = int(row[0]), str(row[1]), str(row[2])
    first_seq = last_seq - n + 1
    now = datetime.now(UTC)
    payloads = [msgspec.json.encode(payload).decode() for _, payload in frames]
    # Positions, rows and NOTIFY in one statement (see the module docstring)
    last_pos = int(
        (
            await session.execute(
                text(
                    "WITH p AS (UPDATE stream_position SET pos = pos + :n WHERE id = 1 "
                    "RETURNING pos), "
                    "ins AS (INSERT INTO notifications "
                    "(pos, execution_id, seq, customer_id, project_id, type, payload, created_at) "
                    "SELECT p.pos - :n + f.ord, CAST(:execution_id AS uuid), "
                    "CAST(:first_seq AS bigint) + f.ord - 1, CAST(:customer_id AS text), "
                    "CAST(:project_id AS text), f.type, CAST(f.payload AS jsonb), "
                    "CAST(:created_at AS timestamptz) FROM p, "
                    "unnest(CAST(:types AS text[]), CAST(:payloads AS text[])) "
                    "WITH ORDINALITY AS f(type, payload, ord)) "
                    "SELECT p.pos, pg_notify(:channel, p.pos::text) FROM p"
                ),
                {
                    "n": n,
                    "execution_id": execution_id,
                    "first_seq": first_seq,
                    "customer_id": customer_id,
                    "project_id": project_id,
                    "created_at": now,
                    "types": [kind for kind, _ in frames],
                    "payloads": payloads,
                    "channel": STREAM_CHANNEL,
                },
            )
        ).one()[0]
    )
    first_pos = last_pos - n + 1
    ts = iso(now)
    return [
        Frame(
            id=str(first_pos + i),
            type=kind,
            ts=ts,
            timestamp=ts,
            customer_id=customer_id,
            project_id=project_id,
            execution_id=str(execution_id),
            seq=first_seq + i,
            payload=payload,
            **frame_fields(kind, payload),
        )
        for i, (kind, payload) in enumerate(frames)
    ]
