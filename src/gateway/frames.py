"""The live stream's frames as the gateway sends them, and the frames a client may send.

Every frame the gateway writes to a WebSocket or an SSE response is encoded through one of
these msgspec Structs (``gateway.fanout``): the envelope of a stored notification
(``StoredFrame``, or ``UpdateFrame`` for ``execution-update`` with the requirements'
``status`` and ``progress``) around the payload the pipeline stored through its type
(``pipeline.frames``), or a control frame (``ControlFrame``) around one of the control
payloads below. The AsyncAPI document (``gateway.asyncapi``) is generated from the same
types, so the contract and the wire cannot drift apart.

The envelopes are generic in the frame's ``type`` and its ``payload``: the gateway sends a
stored payload as the JSON text the database holds (``msgspec.Raw``), and the document
instantiates each envelope with its frame type's ``Literal`` and payload type.
"""

from __future__ import annotations

from typing import Annotated, Generic, Literal, TypeVar

import msgspec
from msgspec import Meta

from pipeline import prd

T = TypeVar("T")
P = TypeVar("P")

Cursor = Annotated[str, Meta(pattern="^[0-9]{1,19}$", description=(
    "The frame's position in the stream: resume with since=<id> (SSE: Last-Event-ID)"))]
MAX_CURSOR_DIGITS = 19
"""A cursor is a frame id, a bigint: at most 19 digits."""


def is_cursor(value: str) -> bool:
    """``value`` reads as a cursor (``Cursor``): ASCII digits only (``str.isdigit`` also
    takes ``²`` and Arabic-Indic digits), at most ``MAX_CURSOR_DIGITS`` of them."""
    return value.isascii() and value.isdigit() and len(value) <= MAX_CURSOR_DIGITS

Timestamp = Annotated[str, Meta(
    pattern="^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{3}Z$",
    description="ISO 8601 UTC with milliseconds (timestamp: the same, by the requirements' name)")]
Uuid = Annotated[str, Meta(extra_json_schema={"format": "uuid"})]
State = Annotated[str, Meta(
    description="The requirements' execution state, from the lifecycle status and stage",
    extra_json_schema={"enum": list(prd.STATES)})]
Progress = Annotated[float, Meta(ge=0, le=100, description=(
    "Percent done, one decimal: finished tasks plus the current task's stage"))]


class _Frame(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True,
             forbid_unknown_fields=True):
    """A frame as sent: camelCase fields, nothing undeclared."""


class StoredFrame(_Frame, Generic[T, P]):
    """A stored notification of one execution (``execution-log``, ``error``,
    ``completion``), live or replayed."""

    id: Cursor
    type: T
    ts: Timestamp
    timestamp: Timestamp
    customer_id: str
    project_id: str
    execution_id: Uuid
    task_id: Annotated[str | None, Meta(description="The task it concerns, null when none")]
    seq: Annotated[int, Meta(ge=1, description="Gapless sequence number per execution")]
    payload: P


class UpdateFrame(_Frame, Generic[T, P]):
    """An ``execution-update``: a stored notification with the requirements' ``status``
    and ``progress`` at the top level."""

    id: Cursor
    type: T
    ts: Timestamp
    timestamp: Timestamp
    customer_id: str
    project_id: str
    execution_id: Uuid
    task_id: Annotated[str | None, Meta(description="The current task, null when none")]
    seq: Annotated[int, Meta(ge=1, description="Gapless sequence number per execution")]
    status: State
    progress: Progress
    payload: P


class ControlFrame(_Frame, Generic[T, P]):
    """A frame of the connection, not stored: no cursor, no execution. ``customerId`` and
    ``projectId`` name the project when the socket is scoped to exactly one, else null."""

    id: None
    type: T
    ts: Timestamp
    timestamp: Timestamp
    customer_id: str | None
    project_id: str | None
    execution_id: None
    task_id: None
    seq: None
    payload: P


class _Control(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True,
               forbid_unknown_fields=True):
    """A control frame's payload."""


class ConnectionEstablished(_Control):
    """The first frame of every connection: the subscription is in place, nothing
    committed after it can be missed."""

    connection_id: str
    resumed_from: Annotated[str | None, Meta(
        description="The cursor the client resumed from; absent for a fresh start")] = None


class Resync(_Control):
    """The client missed frames (its queue overflowed, or retention pruned frames past
    its cursor): reload the state you show; the frames after ``since`` follow."""

    since: Cursor
    reason: str
    pruned_up_to: Annotated[str | None, Meta(
        description="Retention pruned the frames up to this cursor; absent on overflow")] = None


class StreamError(_Control):
    """The client did something wrong on this connection (a malformed or oversized
    frame) or its token expired (SSE; a WebSocket is closed with 4401)."""

    classification: Literal["client"]
    message: str


class Pong(_Control):
    """The answer to a client's ``ping`` (WebSocket)."""


class ReplayComplete(_Control):
    """Sent once per connection, with or without ``since``: every stored frame up to
    ``cursor`` that this socket carries has been sent (the backlog is over); every frame
    after it is live. It comes after the last replayed frame and before the first live
    one."""

    cursor: Annotated[str, Meta(pattern="^[0-9]{1,19}$", description=(
        "The stream position the client is caught up to: resuming with since=<cursor> "
        "misses nothing and repeats nothing"))]
    replayed: Annotated[int, Meta(ge=0, description=(
        "How many stored frames this connection was sent from the table before it "
        "(the backlog; nearly always 0 without since)"))]


ControlPayload = ConnectionEstablished | Resync | StreamError | Pong | ReplayComplete

CONTROL_TYPES: dict[type[_Control], str] = {
    ConnectionEstablished: "connection-established",
    Resync: "resync",
    StreamError: "error",
    Pong: "pong",
    ReplayComplete: "replay-complete",
}
"""Each control payload's frame type."""


class Ping(msgspec.Struct, kw_only=True):
    """A client's frame (WebSocket; at most 10 KB of JSON): the server answers ``pong``.
    Anything else gets an ``error`` frame and the connection stays open."""

    type: Literal["ping"]
