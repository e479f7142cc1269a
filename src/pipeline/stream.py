"""Appending notifications: per-execution ``seq`` and a global, commit-ordered ``pos``.

``seq`` is taken under the execution row's lock, so it is gapless per execution. ``pos``
is taken from the one-row ``stream_position`` table under its row lock, held until the
transaction commits: a transaction that got positions 11..12 cannot commit before the
one that got 10 has, so readers following ``pos`` see rows strictly in order and never
skip one. That lock is the price of a single cursor per client; ``append`` is therefore
the last statement of every transaction that notifies, so the lock is held for one round
trip plus the commit. NOTIFY is sent once per transaction with a pointer, never the data.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

STREAM_CHANNEL = "devteam_stream"

FRAME_TYPES = ("execution-update", "execution-log", "error", "completion")


class Frame(msgspec.Struct, frozen=True, rename="camel"):
    """One notification as clients see it (CONTRACTS "Live stream")."""

    id: str
    type: str
    ts: str
    customer_id: str
    project_id: str
    execution_id: str
    seq: int
    payload: dict[str, Any]


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
    if not frames:
        return []
    n = len(frames)
    row = (
        await session.execute(
            text(
                "UPDATE executions SET last_seq = last_seq + :n, updated_at = now() "
                "WHERE id = :id RETURNING last_seq, customer_id, project_id"
            ),
            {"n": n, "id": execution_id},
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
            customer_id=customer_id,
            project_id=project_id,
            execution_id=str(execution_id),
            seq=first_seq + i,
            payload=payload,
        )
        for i, (kind, payload) in enumerate(frames)
    ]
