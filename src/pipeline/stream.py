"""Appending notifications: per-execution ``seq`` and a global, commit-ordered ``pos``.

``seq`` is taken under the execution row's lock, so it is gapless per execution. ``pos``
is taken from the one-row ``stream_position`` table under its row lock, held until the
transaction commits: a transaction that got positions 11..12 cannot commit before the
one that got 10 has, so readers following ``pos`` see rows strictly in order and never
skip one. That lock is the price of a single cursor per client; ``append`` is therefore
the last statement of every transaction that notifies, so the lock is held for one round
trip plus the commit. NOTIFY is sent once per append with the rows it wrote when they
fit in one (else the last position; see ``store.notifications``): the gateway sends
them without reading the table back, and reads it whenever it finds a gap.

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

from pipeline import prd
from pipeline.frames import payload_of
from pipeline.store import common, notifications
from pipeline.store.port import StorePort, Tx

STREAM_CHANNEL = notifications.STREAM_CHANNEL
iso = common.iso
"""ISO 8601 UTC with ``Z`` and milliseconds."""

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


class _Lookup:
    """``previous`` not given: read it (the execution row locked)."""


LOOKUP = _Lookup()


async def append(
    tx: Tx,
    execution_id: uuid.UUID,
    frames: Sequence[tuple[str, dict[str, Any]]],
    *,
    previous: Any = LOOKUP,
) -> list[Frame]:
    """Append ``(type, payload)`` notifications for one execution in the caller's transaction.

    Call it last in the transaction (see the module docstring). ``previous`` is the last
    ``execution-update`` payload sent when the caller knows it (None for an execution
    inserted in this transaction), else it is read. Returns the frames with their ids
    (cursor = ``pos``) and sequence numbers.
    """
    # every payload as its frame type encodes it; FramePayloadError if it is not one
    frames = [(kind, payload_of(kind, payload)) for kind, payload in frames]
    if not frames:
        return []
    newest: Any = None
    if any(kind == "execution-update" for kind, _ in frames):
        if isinstance(previous, _Lookup):
            previous = await tx.executions.lock_last_update(execution_id)
        frames, newest = drop_repeated_updates(frames, previous)
        if not frames:
            return []
    now = datetime.now(UTC)
    appended = await tx.notifications.append(execution_id, list(frames), created_at=now,
                                             last_update=newest)
    ts = iso(now)
    return [
        Frame(
            id=str(appended.first_pos + i),
            type=kind,
            ts=ts,
            timestamp=ts,
            customer_id=appended.customer_id,
            project_id=appended.project_id,
            execution_id=str(execution_id),
            seq=appended.first_seq + i,
            payload=payload,
            **frame_fields(kind, payload),
        )
        for i, (kind, payload) in enumerate(frames)
    ]


async def append_alone(
    store: StorePort, execution_id: uuid.UUID, frames: Sequence[tuple[str, dict[str, Any]]]
) -> list[Frame]:
    """``append`` in a transaction of its own, for frames that commit with nothing else
    (the log sink's batches). Without an ``execution-update`` (whose previous payload is
    read under the execution's lock first) ``append`` is one statement, sent alone: it is
    its own transaction, one round trip instead of BEGIN, the statement and COMMIT, and
    the NOTIFY leaves as soon as it ends. An update takes a transaction."""
    if any(kind == "execution-update" for kind, _ in frames):
        async with store.tx() as tx:
            return await append(tx, execution_id, frames)
    async with store.statement() as alone:
        return await append(alone, execution_id, frames)
