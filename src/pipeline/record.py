"""The finish transaction of a stage: result, execution, context, errors, next, frames.

Everything a stage changes lands here together, so the database, the notifications
clients see and the next step can never disagree.

What is stored is bounded (``DEVTEAM_LIMITS_*``), redacted first so a cut never leaves
half a secret behind: the stage result, the error and each frame to
``stage_result_bytes``, the event's ``task_context`` to ``task_context_bytes``; texts
over the bound are cut in the middle with a marker (``runner.limits.bound_json``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pipeline import audit, executions, outbox, stream
from pipeline.audit import Principal
from pipeline.decide import Close, ExecutionView, Next, Retry, decide, stage_sets_status
from pipeline.lifecycle import TERMINAL, Stage
from pipeline.outbox import StageCommand
from pipeline.outcome import Outcome, StageContext
from pipeline.services import Services
from pipeline.store.executions import NewError
from pipeline.store.port import Tx
from pipeline.store.projects import NewResolution
from pipeline.store.stage_runs import Finished
from pipeline.stream import iso
from runner.limits import bound_json, count


async def record_outcome(
    services: Services,
    ctx: StageContext,
    *,
    run_id: int,
    owner: str,
    outcome: Outcome,
    duration_ms: int,
) -> bool:
    """Record ``outcome`` if this worker still owns the stage run; False if it lost it."""
    box = services.settings.limits
    per_result = f"{count(box.stage_result_bytes)} bytes per stage result"

    def stored(value: Any) -> Any:
        return bound_json(services.redactor.redact_obj(value), box.stage_result_bytes,
                          what=per_result)

    result = stored(outcome.result)
    error = stored(outcome.error.to_dict()) if outcome.error is not None else None
    async with services.store.tx() as tx:
        execution = await executions.get(tx, ctx.execution.id, lock=True)
        assert execution is not None
        started = await tx.stage_runs.finish(run_id, owner, Finished(
            status=outcome.status, duration_ms=duration_ms, result=result, error=error,
            usage=outcome.usage))
        if started is None:
            return False
        await outbox.complete(tx, ctx.command_id)
        frames: list[tuple[str, dict[str, Any]]] = list(outcome.frames)
        fields: dict[str, Any] = dict(outcome.execution)
        if "status" in fields and not stage_sets_status(ctx.command.stage, execution.state):
            # A person paused or stopped meanwhile; the stage does not overrule them.
            fields.pop("status")
        error_id = None
        if error is not None and (outcome.fatal or outcome.record_error):
            error_id = await _record_error(tx, ctx, error)
            frames.append(
                (
                    "error",
                    {
                        "errorId": str(error_id),
                        "stage": ctx.command.stage,
                        "taskId": ctx.task_id or None,
                        "classification": error["classification"],
                        "message": error["message"],
                    },
                )
            )
            fields["error_id"] = error_id
        await _injections(tx, execution.project_id, outcome, error_id)
        nxt = await _route(tx, ctx, execution, outcome, fields, frames)
        await executions.set_fields(tx, execution.id, **fields)
        if fields.get("status") not in (None, execution.status):
            await audit.record(
                tx,
                principal=Principal(user_id=audit.SYSTEM, role="system",
                                    correlation_id=ctx.correlation_id),
                action=f"execution.{fields['status']}",
                project_id=execution.project_id,
                execution_id=execution.id,
                details={"from": execution.status, "stage": ctx.command.stage,
                         "taskId": ctx.task_id or None,
                         "pauseReason": fields.get("pause_reason")},
            )
        await _update_context(
            tx, ctx, execution.event_id, outcome, result, error, started, duration_ms
        )
        current = await executions.get(tx, execution.id)
        assert current is not None
        if isinstance(nxt, Close):
            frames.append(("completion", _completion(current)))
        # the execution's final state first, then its ``completion``: a client that stops
        # reading at ``completion`` has seen every update
        frames = [
            *(f for f in frames if f[0] != "completion"),
            ("execution-update", current.update_payload()),
            *(f for f in frames if f[0] == "completion"),
        ]
        await stream.append(tx, execution.id, [(kind, stored(payload))
                                                for kind, payload in frames])
    return True


async def _injections(
    tx: Tx, project_id: str, outcome: Outcome, error_id: uuid.UUID | None
) -> None:
    """The injected tasks the outcome adds, fails or completes."""
    if outcome.inject is not None:
        await _inject(tx, project_id, outcome, error_id)
    if outcome.fail_injection is not None:
        await tx.projects.end_injection(project_id, outcome.fail_injection, "failed")
    if outcome.complete_injection is not None:
        await tx.projects.end_injection(project_id, outcome.complete_injection, "done")


async def _route(
    tx: Tx,
    ctx: StageContext,
    execution: executions.ExecutionRow,
    outcome: Outcome,
    fields: dict[str, Any],
    frames: list[tuple[str, dict[str, Any]]],
) -> Next:
    """Store what ``decide`` says runs next: the execution's fields, the command."""
    nxt = decide(ctx.command, outcome, ExecutionView(
        id=str(execution.id), status=execution.state, stop_point=execution.stop_point))
    if isinstance(nxt, Retry):
        stage = ctx.command.stage
        frames.append(
            (
                "execution-log",
                {
                    "level": "warning",
                    "stage": stage,
                    "taskId": ctx.task_id,
                    "lines": [f"{stage} will be retried in {nxt.delay:.0f}s: {outcome.error}"],
                },
            )
        )
    fields.update(nxt.fields())
    if isinstance(nxt, Close):
        fields["finished_at"] = datetime.now(UTC)
    order = nxt.enqueue()
    if order is not None:
        command, delay = order
        await _enqueue(tx, execution, command, delay)
    return nxt


def _completion(current: executions.ExecutionRow) -> dict[str, Any]:
    """The ``completion`` frame of an execution closed without its FINALIZE's."""
    ended = current.finished_at or datetime.now(UTC)
    return {
        "status": current.status,
        "completedTasks": current.completed_tasks,
        "totalTasks": current.total_tasks,
        "durationMs": int((ended - current.started_at).total_seconds() * 1000),
    }


async def _enqueue(
    tx: Tx,
    execution: executions.ExecutionRow,
    command: StageCommand,
    delay: float = 0.0,
) -> None:
    await outbox.enqueue(
        tx,
        command,
        customer_id=execution.customer_id,
        correlation_id=execution.correlation_id,
        delay_seconds=delay,
    )


async def _record_error(tx: Tx, ctx: StageContext, error: dict[str, Any]) -> uuid.UUID:
    error_id = uuid.uuid4()
    attempts = await tx.stage_runs.attempts(ctx.execution.id, ctx.task_id, ctx.command.stage)
    await tx.executions.record_error(NewError(
        id=error_id,
        execution_id=ctx.execution.id,
        task_id=ctx.task_id or None,
        stage=ctx.command.stage,
        classification=error["classification"],
        message=error["message"],
        details=error.get("details", {}),
        attempts=max(attempts, ctx.attempt),
    ))
    return error_id


async def _inject(
    tx: Tx, project_id: str, outcome: Outcome, error_id: uuid.UUID | None
) -> None:
    spec = outcome.inject
    assert spec is not None
    task = dict(spec.task)
    if error_id is not None:
        task["title"] = f"Resolve error: {error_id}"
    await tx.projects.add_resolution(NewResolution(
        project_id=project_id, task_id=spec.task_id, task=task, reason=spec.reason,
        source_error_id=error_id, origin_task_id=spec.origin_task_id))


async def _update_context(
    tx: Tx,
    ctx: StageContext,
    event_id: uuid.UUID,
    outcome: Outcome,
    result: dict[str, Any],
    error: dict[str, Any] | None,
    started: datetime,
    duration_ms: int,
) -> None:
    context = await tx.executions.lock_task_context(event_id)
    nodes = dict(context.get("nodes") or {})
    node: dict[str, Any] = {
        "status": outcome.status,
        "taskId": ctx.task_id or None,
        "attempt": ctx.attempt,
        "startedAt": iso(started),
        "finishedAt": iso(datetime.now(UTC)),
        "durationMs": duration_ms,
        "outputs": result,
    }
    if error is not None:
        node["error"] = error
    nodes[Stage(ctx.command.stage).node_name] = node
    context["nodes"] = nodes
    about = outcome.summary_task_id or ctx.task_id
    if outcome.task_summary and about:
        tasks = dict(context.get("tasks") or {})
        tasks[about] = {**dict(tasks.get(about) or {}), **outcome.task_summary}
        context["tasks"] = tasks
    metadata = dict(context.get("metadata") or {})
    metadata.setdefault("correlationId", ctx.correlation_id)
    context["metadata"] = metadata
    limit = ctx.services.settings.limits.task_context_bytes
    context = bound_json(context, limit, what=f"{count(limit)} bytes per task context")
    await tx.executions.set_task_context(event_id, context)


__all__ = ["TERMINAL", "record_outcome"]
