"""DONE (a task is finished: clean its containers, count it) and FINALIZE (the execution
ends: remove its containers and working copy, record the final status, say so)."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.lifecycle import Stage, Status
from pipeline.outcome import Outcome, StageContext
from pipeline.stages.common import blocking, drop_task_containers, next_select
from runner.errors import RunnerError
from runner.git import workspace_paths
from runner.removal import remove_tree


async def done(ctx: StageContext) -> Outcome:
    await drop_task_containers(ctx)
    completed = ctx.execution.completed_tasks + 1
    ctx.log.line(f"task {ctx.task_id} done ({completed} of {ctx.execution.total_tasks})")
    summary = {"status": "done", "finishedAt": datetime.now(UTC).isoformat()}
    # the task is finished: until the next one is selected there is no current task
    fields = {"completed_tasks": completed, "current_task_id": None, "branch": None}
    if ctx.execution.single_task_id:
        return Outcome(
            result={"taskId": ctx.task_id},
            finalize=Status.COMPLETED,
            execution=fields,
            task_summary=summary,
        )
    return Outcome(
        result={"taskId": ctx.task_id},
        next=await next_select(ctx),
        execution=fields,
        task_summary=summary,
    )


async def finalize(ctx: StageContext) -> Outcome:
    """Runs once per execution, whatever ended it; the last frame is ``completion``."""
    wanted = Status(ctx.command.outcome or Status.COMPLETED.value)
    state = ctx.execution.state
    if state is Status.STOPPING:
        final = Status.STOPPED
    elif state is Status.ERROR:
        final = Status.ERROR
    else:
        final = wanted
    try:
        removed: int | None = await blocking(
            ctx.services.sandbox.remove_execution, str(ctx.execution.id)
        )
    except RunnerError as exc:
        # The execution ends regardless; the reaper removes what is left once Docker answers.
        ctx.log.line(f"containers not removed now ({exc.message}); the reaper will", "warning")
        removed = None
    paths = workspace_paths(
        ctx.services.git.root,
        ctx.execution.customer_id,
        ctx.execution.project_id,
        str(ctx.execution.id),
    )
    left = await blocking(remove_tree, paths.worktree)
    if left:
        # However the repository shaped its tree, the execution ends; the reaper retries.
        ctx.log.line(f"{len(left)} entries of the working copy not removed now "
                     f"({left[0]}); the reaper will", "warning")
    finished = datetime.now(UTC)
    duration_ms = int((finished - ctx.execution.started_at).total_seconds() * 1000)
    ctx.log.line(f"execution {final.value}: removed {removed} container(s) and the working copy")
    completion = {
        "status": final.value,
        "completedTasks": ctx.execution.completed_tasks,
        "totalTasks": ctx.execution.total_tasks,
        "durationMs": duration_ms,
    }
    return Outcome(
        result={"status": final.value, "containersRemoved": removed},
        execution={
            "status": final.value,
            "finished_at": finished,
            "current_stage": Stage.FINALIZE.value,
            "pending_command": None,
        },
        frames=[("completion", completion)],
    )
