"""What happens after a failed IMPLEMENT→VERIFY round (DESIGN "Verify retries").

1. Up to ``verify_rounds`` rounds per task (the first plus two retries): IMPLEMENT runs
   again, given the failing output as feedback.
2. Then an error-resolution task is injected first in line (``Resolve error: <errorId>``),
   at most ``max_resolution_tasks`` times for the same original task.
3. Then the execution pauses with ``pauseReason: "human_review"`` and an error record a
   person can read. Resuming after review lets resolution start from zero.
"""

from __future__ import annotations

import uuid
from typing import Any

from pipeline.lifecycle import PauseReason, Stage, StageStatus
from pipeline.outcome import Injection, Outcome, StageContext
from pipeline.stages.common import (
    blocking,
    checkout,
    drop_task_containers,
    next_select,
)
from pipeline.stages.results import Prepared, stage_result
from runner.errors import Classification, RunnerError
from runner.prompt import trim_output
from runner.tasklist import Task


async def failed_round(
    ctx: StageContext,
    task: Task,
    *,
    result: dict[str, Any],
    message: str,
    classification: Classification,
    feedback: str,
    summary: dict[str, Any] | None = None,
) -> Outcome:
    rounds = ctx.services.settings.pipeline.verify_rounds
    feedback = trim_output(feedback, 4000)
    error = RunnerError(
        f"task {task.id}: {message}",
        classification=classification,
        details={"taskId": task.id, "attempt": ctx.attempt, "rounds": rounds, "feedback": feedback},
    )
    recorded = {**result, "feedback": feedback}
    summary = {**(summary or {}), "attempts": ctx.attempt}
    if ctx.attempt < rounds:
        ctx.log.line(
            f"round {ctx.attempt} of {rounds} failed ({message}); trying again with "
            "the failure as feedback",
            "warning",
        )
        return Outcome(
            status=StageStatus.FAILED,
            result=recorded,
            error=error,
            next=ctx.then(Stage.IMPLEMENT, attempt=ctx.attempt + 1),
            task_summary=summary,
        )
    await fresh_branch(ctx)
    await drop_task_containers(ctx)
    origin = await _origin(ctx, task.id)
    retired = task.id if origin != task.id else None  # a resolution task that failed itself
    used = await _resolutions(ctx, origin)
    summary["status"] = "failed"
    limit = ctx.services.settings.pipeline.max_resolution_tasks
    if used < limit:
        fix_id = f"fix-{origin}"[:80] + f"-{uuid.uuid4().hex[:6]}"
        ctx.log.line(
            f"{rounds} rounds failed: injecting error-resolution task {fix_id} "
            f"({used + 1} of {limit})",
            "warning",
        )
        return Outcome(
            status=StageStatus.FAILED,
            result=recorded,
            error=error,
            record_error=True,
            inject=Injection(
                task_id=fix_id,
                task={
                    "title": f"Resolve error for task {origin}",
                    "description": (
                        f"Task {task.id} ({task.title}) failed verification {rounds} times.\n"
                        f"{message}\n\nFailing output:\n{feedback}\n\nOriginal task:\n"
                        f"{task.description}"
                    ),
                    "type": "atomic",
                    "files": list(task.files),
                    "criteria": dict(task.criteria),
                },
                reason=f"verification failed {rounds} times",
                origin_task_id=origin,
            ),
            next=await next_select(ctx),
            task_summary=summary,
            fail_injection=retired,
        )
    ctx.log.line(
        f"{limit} error-resolution tasks did not fix {origin}: pausing for a person", "error"
    )
    return Outcome(
        status=StageStatus.FAILED,
        result=recorded,
        error=error,
        record_error=True,
        pause_reason=PauseReason.HUMAN_REVIEW,
        next=await next_select(ctx),
        task_summary=summary,
        fail_injection=retired,
    )


async def fresh_branch(ctx: StageContext) -> None:
    """Point the failed task's branch back at the default branch, so that the next time
    the task is selected it starts from the current code, not from the failed change."""
    prep = await stage_result(ctx, Stage.PREP, Prepared)
    if prep is None:
        return
    co = await checkout(ctx)
    await blocking(
        ctx.services.git.reset_branch,
        co,
        prep.branch,
        f"refs/heads/{co.default_branch}",
    )


async def _origin(ctx: StageContext, task_id: str) -> str:
    """The task a resolution task was made for (a task is its own origin)."""
    async with ctx.services.store.reads() as q:
        injected = await q.projects.injection(ctx.project["project_id"], task_id)
    return (injected.origin_task_id if injected is not None else None) or task_id


async def _resolutions(ctx: StageContext, origin: str) -> int:
    """Error-resolution tasks this execution injected for ``origin`` (a new execution starts
    with the whole budget: what an earlier one injected and failed does not count)."""
    async with ctx.services.store.reads() as q:
        return await q.projects.resolutions(ctx.project["project_id"], origin, ctx.execution.id)
