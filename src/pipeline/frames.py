"""The payloads of the stream's stored frames, one msgspec Struct per frame type.

Every notification goes through ``payload_of`` in ``pipeline.stream.append``: the dict a
stage built is converted to its type (strictly: a missing field, a field of the wrong
type or a field the type does not declare is a ``FramePayloadError``) and stored as that
type encodes. So what clients receive in ``payload`` is exactly what these types say, and
the AsyncAPI document (``gateway.asyncapi``, served at ``/schema/asyncapi.json``) is
generated from them: a field added to a frame without its type fails at once, in tests.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from pipeline.lifecycle import PauseReason, Stage, Status
from runner.errors import Classification

Level = Literal["debug", "info", "warning", "error"]


class _Payload(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True,
               omit_defaults=True):
    """A stored frame's payload: camelCase fields, nothing undeclared."""


class ExecutionUpdatePayload(_Payload):
    """``execution-update``: the execution row as it is now."""

    status: Annotated[Status, Meta(description=(
        "The lifecycle status (the frame's top-level status is the requirements' state)"))]
    stage: Annotated[Stage | None, Meta(description="The stage running or next")]
    task_id: Annotated[str | None, Meta(description=(
        "The current task; '#n' while SELECT looks for the n-th; null between tasks"))]
    progress: Annotated[int, Meta(ge=0, le=100, description=(
        "Percent of the tasks finished (the top-level progress also counts stages)"))]
    branch: Annotated[str | None, Meta(description="The current task's branch, else null")]
    completed_tasks: Annotated[int, Meta(ge=0)]
    total_tasks: Annotated[int, Meta(ge=0)]
    pause_reason: Annotated[PauseReason | None, Meta(
        description="Why it is paused; present only while paused")] = None


class ExecutionLogPayload(_Payload):
    """``execution-log``: a batch of a stage's output lines (redacted, bounded)."""

    level: Annotated[Level, Meta(description="The highest level of the batch's lines")]
    stage: Annotated[str | None, Meta(description="The stage that printed them")]
    task_id: str | None
    lines: list[str]
    dropped: Annotated[int, Meta(ge=0, description=(
        "Lines the stage run's limits dropped before this batch; absent when none"))] = 0


class ErrorPayload(_Payload):
    """``error``: an error record of the execution (kept by retention)."""

    error_id: Annotated[str, Meta(description="The error record's id")]
    stage: Stage
    task_id: str | None
    classification: Classification
    message: Annotated[str, Meta(description="What went wrong (redacted)")]


class CompletionPayload(_Payload):
    """``completion``: the execution ended; the last frame of an execution."""

    status: Annotated[Literal["completed", "stopped", "error"], Meta(
        description="How it ended: a terminal lifecycle status")]
    completed_tasks: Annotated[int, Meta(ge=0)]
    total_tasks: Annotated[int, Meta(ge=0)]
    duration_ms: Annotated[int, Meta(description="Wall time from start to end")]


PAYLOADS: dict[str, type[_Payload]] = {
    "execution-update": ExecutionUpdatePayload,
    "execution-log": ExecutionLogPayload,
    "error": ErrorPayload,
    "completion": CompletionPayload,
}
"""Every stored frame type and its payload type."""


class FramePayloadError(TypeError):
    """A stage built a frame its type does not describe (a programming error)."""


def payload_of(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` as its frame type encodes it (see the module docstring)."""
    cls = PAYLOADS.get(kind)
    if cls is None:
        raise FramePayloadError(f"no frame type {kind!r}")
    try:
        typed = msgspec.convert(payload, cls)
    except msgspec.ValidationError as exc:
        raise FramePayloadError(f"{kind} payload: {exc}") from None
    out: dict[str, Any] = msgspec.to_builtins(typed)
    return out
