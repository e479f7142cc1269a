"""Database tables. Alembic migrations in ``db/`` create exactly this (``alembic check``).

Rows are the truth of the whole service: the relay, the workers and every gateway read
and write here, and nothing else holds state that matters.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

_ACTIVE_SQL = "status IN ('initializing', 'running', 'paused', 'stopping')"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class Base(DeclarativeBase):
    metadata = metadata
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONB, list[Any]: JSONB}


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Project(Base):
    """A customer's project: where its repository is and how to verify it."""

    __tablename__ = "projects"

    project_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(100), index=True)
    repository_url: Mapped[str] = mapped_column(Text)
    default_branch: Mapped[str | None] = mapped_column(String(255))
    task_list_path: Mapped[str | None] = mapped_column(String(500))
    verification: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    quota: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Event(Base):
    """The seed's Event Record: what a client asked for and the context the stages built."""

    __tablename__ = "events"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    workflow_type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column()
    task_context: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    project_id: Mapped[str] = mapped_column(String(200), index=True)
    user_id: Mapped[str] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    """``options.idempotencyKey``: one per subject and project, like the header's key."""
    idempotency_hash: Mapped[str | None] = mapped_column(String(64))
    """SHA-256 of the request the key was first used with (another request is refused)."""
    correlation_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (
        Index(
            "uq_events_user_id_project_id_idempotency_key",
            "user_id",
            "project_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )


class Execution(Base):
    """One autonomous run of a project's task list (or of a single task)."""

    __tablename__ = "executions"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.project_id"))
    customer_id: Mapped[str] = mapped_column(String(100))
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id"))
    user_id: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    pause_reason: Mapped[str | None] = mapped_column(String(32))
    stop_point: Mapped[str | None] = mapped_column(String(200))
    single_task_id: Mapped[str | None] = mapped_column(String(200))
    current_task_id: Mapped[str | None] = mapped_column(String(200))
    current_stage: Mapped[str | None] = mapped_column(String(32))
    branch: Mapped[str | None] = mapped_column(String(255))
    completed_tasks: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    total_tasks: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_seq: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    # the payload of the last execution-update sent, so an identical one is not sent again
    last_update: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    pending_command: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    correlation_id: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_executions_project_started", "project_id", text("started_at DESC")),
        Index("ix_executions_user_started", "user_id", text("started_at DESC")),
        # The contract allows one active execution per project; the database enforces it.
        Index(
            "uq_executions_active_project",
            "project_id",
            unique=True,
            postgresql_where=text(_ACTIVE_SQL),
        ),
    )


class StageRun(Base):
    """One attempt of one stage of one task, claimed by exactly one worker at a time."""

    __tablename__ = "stage_runs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    execution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("executions.id"))
    task_id: Mapped[str] = mapped_column(String(200))
    stage: Mapped[str] = mapped_column(String(32))
    pass_no: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    """How many times this task was selected in this execution (a task can come back after
    an error-resolution task); keeps every pass's stage runs apart."""
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    command_id: Mapped[int | None] = mapped_column(BigInteger)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claims: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    started_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """What the run consumed (CONTRACTS.md, usage object): the model's tokens and cost for an
    IMPLEMENT round, CPU seconds, peak memory and wall time of VERIFY/setup containers."""

    __table_args__ = (
        UniqueConstraint("execution_id", "task_id", "stage", "pass_no", "attempt"),
        Index(
            "ix_stage_runs_running_lease",
            "lease_until",
            postgresql_where=text("status = 'running'"),
        ),
    )


class Outbox(Base):
    """Commands for the relay: written with the state change, dispatched after commit."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    execution_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    customer_id: Mapped[str] = mapped_column(String(100))
    actor: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column()
    correlation_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = _now()
    available_at: Mapped[datetime] = _now()
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dispatch_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index(
            "ix_outbox_undispatched",
            "available_at",
            "id",
            postgresql_where=text("dispatched_at IS NULL"),
        ),
        Index(
            "ix_outbox_inflight",
            "customer_id",
            "dispatched_at",
            postgresql_where=text("dispatched_at IS NOT NULL AND completed_at IS NULL"),
        ),
    )


class Notification(Base):
    """What clients see. ``pos`` is a global, gapless, commit-ordered stream position.

    ``pos`` is allocated from ``stream_position`` under a row lock held until commit, so
    positions become visible strictly in order and a reader that follows ``pos`` never
    skips a row; ``seq`` is the per-execution number (taken under the execution's lock).
    """

    __tablename__ = "notifications"

    pos: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    execution_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    seq: Mapped[int] = mapped_column(BigInteger)
    customer_id: Mapped[str] = mapped_column(String(100))
    project_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = _now()

    __table_args__ = (
        UniqueConstraint("execution_id", "seq"),
        Index("ix_notifications_project_pos", "project_id", "pos"),
        Index("ix_notifications_customer_pos", "customer_id", "pos"),
    )


class StreamPosition(Base):
    """A single row holding the last allocated notification position."""

    __tablename__ = "stream_position"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    pos: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    pruned_pos: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    """Retention's watermark: notifications up to it may have been pruned (the reaper raises
    it before it deletes); a client resuming from an older cursor is told ``resync``."""


class IdempotencyKey(Base):
    """A state-changing request's key and, once finished, its exact response."""

    __tablename__ = "idempotency_keys"

    user_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    locked_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class InjectedTask(Base):
    """A task added at run time (by a person or by error resolution), not in the file."""

    __tablename__ = "injected_tasks"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.project_id"))
    task_id: Mapped[str] = mapped_column(String(200))
    injection_type: Mapped[str] = mapped_column(String(16))
    position: Mapped[int | None] = mapped_column(Integer)
    replace_task_id: Mapped[str | None] = mapped_column(String(200))
    task: Mapped[dict[str, Any]] = mapped_column()
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default=text("'pending'"))
    source_error_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    origin_task_id: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _now()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("project_id", "task_id"),
        Index("ix_injected_tasks_pending", "project_id", "status"),
    )


class ErrorRecord(Base):
    """A classified failure a person can read through the errors endpoint (redacted)."""

    __tablename__ = "errors"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    execution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("executions.id"), index=True)
    task_id: Mapped[str | None] = mapped_column(String(200))
    stage: Mapped[str] = mapped_column(String(32))
    classification: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    created_at: Mapped[datetime] = _now()


class AuditEntry(Base):
    """Who changed what, when, under which correlation id."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = _now()
    user_id: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str | None] = mapped_column(String(200), index=True)
    execution_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    correlation_id: Mapped[str] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))


class SandboxLease(Base):
    """A granted or waiting slot for a task container (global and per-customer limits)."""

    __tablename__ = "sandbox_leases"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(100))
    holder: Mapped[str] = mapped_column(String(255), unique=True)
    requested_at: Mapped[datetime] = _now()
    granted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    """The container's TTL: the last resort when nothing else released the lease."""
    execution_id: Mapped[str | None] = mapped_column(String(64))
    """Whose container it is (the status API shows the execution's wait)."""
    alive_until: Mapped[datetime] = _now()
    """A waiter renews it with every poll; a creator is given a while to make its container.
    Past it, a waiting lease is dropped and a granted one whose container is missing too."""
    placed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When the container was made: from then on a lease goes as soon as its container does."""

    __table_args__ = (Index("ix_sandbox_leases_customer_id_granted", "customer_id", "granted_at"),)
