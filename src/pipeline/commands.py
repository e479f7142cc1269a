"""The command API the gateway and the CLI call: every state change is one transaction
holding the change, its audit row, its notifications and the outbox command it implies.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from pipeline import audit, outbox, stream
from pipeline.audit import Principal
from pipeline.db import Store
from pipeline.lifecycle import Action, PauseReason, Stage, Status, TransitionError, target
from pipeline.outbox import StageCommand
from pipeline.store.audit import NewAuditEntry
from pipeline.store.executions import (
    NewEvent,
    NewExecution,
    NewStart,
    StartAttempt,
    Started,
    StartRaced,
    new_execution_update,
)
from pipeline.store.port import Tx
from runner.git.remote import parse_remote_url

WORKFLOW_TYPE = "DEVTEAM_AUTOMATION"


class ProjectNotFound(LookupError):
    """The project is unknown (never initialised with a repository URL)."""


class ExecutionNotFound(LookupError):
    """The project has never run."""


class IdempotencyKeyReused(ValueError):
    """``options.idempotencyKey`` was first used (by this subject, for this project) with
    another request."""


class StartResult(msgspec.Struct, frozen=True, kw_only=True):
    event_id: uuid.UUID
    execution_id: uuid.UUID
    command_id: int
    status: str
    correlation_id: str
    replayed: bool = False


class TransitionResult(msgspec.Struct, frozen=True, kw_only=True):
    execution_id: uuid.UUID
    previous_status: str
    status: str

    def wire(self) -> dict[str, str]:
        return {
            "executionId": str(self.execution_id),
            "previousStatus": self.previous_status,
            "status": self.status,
        }


def customer_of(project_id: str) -> str:
    return project_id.split("/", 1)[0]


async def start_execution(
    store: Store,
    *,
    principal: Principal,
    project_id: str,
    repository_url: str | None = None,
    stop_point: str | None = None,
    task: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    event_data: dict[str, Any] | None = None,
) -> StartResult:
    """Create the Event record, the execution and its first command, in one transaction.

    Raises ProjectNotFound when the project has no repository yet, TransitionError (with
    the active execution's status) when the project already has an active execution.
    With ``idempotency_key`` (``data.options.idempotencyKey``), scoped like the
    ``Idempotency-Key`` header by subject, project and the request's hash: the same request
    again returns the first result with ``replayed=True``; another request with the key
    raises IdempotencyKeyReused; another project's key of the same name is another key.
    """
    digest = None
    if idempotency_key is not None:
        digest = _request_hash(project_id=project_id, repository_url=repository_url,
                               stop_point=stop_point, task=task, event_data=event_data)
    if repository_url is not None:
        # Whatever the caller checked: a URL carrying credentials is never stored.
        parse_remote_url(repository_url)
    event_id, execution_id = uuid.uuid4(), uuid.uuid4()
    customer_id = customer_of(project_id)
    data = dict(event_data or {"projectId": project_id})
    if task is not None:
        data.setdefault("task", task)
    execution = NewExecution(
        id=execution_id,
        project_id=project_id,
        customer_id=customer_id,
        event_id=event_id,
        user_id=principal.user_id,
        status=Status.INITIALIZING.value,
        stop_point=stop_point,
        single_task_id=(task or {}).get("id"),
        correlation_id=principal.correlation_id,
    )
    # event, execution, its INIT command, the audit row and the first execution-update
    # (the execution is new: nothing was sent for it yet) in one statement, gated on the
    # project existing and having no active execution
    new = NewStart(
        event=NewEvent(
            id=event_id,
            workflow_type=WORKFLOW_TYPE,
            data=data,
            task_context={
                "nodes": {},
                "metadata": {
                    "correlationId": principal.correlation_id,
                    "executionId": str(execution_id),
                },
            },
            project_id=project_id,
            user_id=principal.user_id,
            idempotency_key=idempotency_key,
            idempotency_hash=digest,
            correlation_id=principal.correlation_id,
        ),
        execution=execution,
        command=outbox.new_command(
            StageCommand(execution_id=str(execution_id), stage=Stage.INIT),
            customer_id=customer_id, correlation_id=principal.correlation_id),
        audit=NewAuditEntry(
            user_id=principal.user_id,
            action="execution.start",
            project_id=project_id,
            execution_id=execution_id,
            correlation_id=principal.correlation_id,
            details={
                "eventId": str(event_id),
                "stopPoint": stop_point,
                "taskId": (task or {}).get("id"),
            },
        ),
        kind="execution-update",
        payload=new_execution_update(execution),
        created_at=datetime.now(UTC),
    )
    try:
        if idempotency_key is None and repository_url is None:
            # the start is its only statement: a transaction by itself (one round trip)
            async with store.statement() as q:
                started = _started(await q.executions.start_checked(new), project_id)
        else:
            async with store.tx() as tx:
                if idempotency_key is not None and digest is not None:
                    prior = await _prior_start(tx, principal.user_id, project_id,
                                               idempotency_key, digest)
                    if prior is not None:
                        return prior
                if repository_url is not None:
                    await tx.projects.upsert(project_id, customer_id, repository_url)
                started = _started(await tx.executions.start_checked(new), project_id)
    except StartRaced:
        # A start of the same project committed while this one waited for its lock: it
        # has just created the project's active execution. Not retried here: the
        # transaction may be an idempotency unit's, which the failed insert has spoiled.
        raise TransitionError(Action.INITIALIZE, Status.INITIALIZING) from None
    return StartResult(
        event_id=event_id,
        execution_id=execution_id,
        command_id=started.command_id,
        status=Status.INITIALIZING.value,
        correlation_id=principal.correlation_id,
    )


def _started(attempt: StartAttempt, project_id: str) -> Started:
    """The start made, or why not: ProjectNotFound, or the TransitionError of starting
    from the latest execution's status (raised inside the transaction: it rolls back)."""
    if attempt.started is not None:
        return attempt.started
    if not attempt.found:
        raise ProjectNotFound(project_id)
    if attempt.latest_status is not None:
        target(Action.INITIALIZE, Status(attempt.latest_status))
    raise RuntimeError(f"{project_id}: the start did not happen, though its latest "
                       f"execution is {attempt.latest_status}")


def _request_hash(**parts: Any) -> str:
    """SHA-256 of a start request's parts, independent of key order and spacing."""
    return hashlib.sha256(msgspec.json.encode(parts, order="sorted")).hexdigest()


async def _prior_start(
    tx: Tx, user_id: str, project_id: str, key: str, digest: str
) -> StartResult | None:
    prior = await tx.executions.prior_start(user_id, project_id, key)
    if prior is None:
        return None
    if prior.idempotency_hash != digest:
        raise IdempotencyKeyReused(
            "this options.idempotencyKey was already used with a different request")
    return StartResult(
        event_id=prior.event_id,
        execution_id=prior.execution_id,
        command_id=int(prior.command_id or 0),
        status="accepted",
        correlation_id=prior.correlation_id,
        replayed=True,
    )


async def _transition(
    store: Store, *, principal: Principal, project_id: str, action: Action
) -> TransitionResult:
    async with store.tx() as tx:
        row = await tx.executions.latest_for_project(project_id, lock=True)
        if row is None:
            raise ExecutionNotFound(project_id)
        previous = row.state
        new = target(action, previous)
        fields: dict[str, Any] = {"status": new.value}
        if action is Action.PAUSE:
            fields["pause_reason"] = PauseReason.USER.value
        elif action is Action.RESUME:
            fields["pause_reason"] = None
            fields["pending_command"] = None
            if row.pending_command:
                await outbox.enqueue(
                    tx,
                    msgspec.convert(row.pending_command, StageCommand),
                    customer_id=row.customer_id,
                    correlation_id=row.correlation_id,
                )
            if row.pause_reason == PauseReason.HUMAN_REVIEW:
                # A person looked at it: error resolution may try again from zero.
                await tx.projects.review_injections(project_id)
        elif action is Action.STOP:
            fields["pending_command"] = None
            if not await tx.stage_runs.running(row.id):
                await outbox.enqueue(
                    tx,
                    StageCommand(
                        execution_id=str(row.id), stage=Stage.FINALIZE, outcome=Status.STOPPED
                    ),
                    customer_id=row.customer_id,
                    correlation_id=row.correlation_id,
                )
        await tx.executions.set_fields(row.id, fields)
        await audit.record(
            tx,
            principal=principal,
            action=f"execution.{action.value}",
            project_id=project_id,
            execution_id=row.id,
            details={"from": previous.value, "to": new.value},
        )
        updated = await tx.executions.get(row.id)
        assert updated is not None
        await stream.append(tx, row.id, [("execution-update", updated.update_payload())])
        return TransitionResult(
            execution_id=row.id, previous_status=previous.value, status=new.value
        )


async def pause(store: Store, *, principal: Principal, project_id: str) -> TransitionResult:
    """running → paused; the running stage finishes and the next one waits for resume."""
    return await _transition(store, principal=principal, project_id=project_id, action=Action.PAUSE)


async def resume(store: Store, *, principal: Principal, project_id: str) -> TransitionResult:
    """paused → running; continues from the recorded next stage."""
    return await _transition(
        store, principal=principal, project_id=project_id, action=Action.RESUME
    )


async def stop(store: Store, *, principal: Principal, project_id: str) -> TransitionResult:
    """running/paused/initializing → stopping; the running tool is cancelled, then stopped."""
    return await _transition(store, principal=principal, project_id=project_id, action=Action.STOP)


__all__ = [
    "ExecutionNotFound",
    "ProjectNotFound",
    "StartResult",
    "TransitionError",
    "TransitionResult",
    "pause",
    "resume",
    "start_execution",
    "stop",
]
