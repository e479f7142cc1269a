"""INIT and SELECT: get the repository ready, then pick the next task."""

from __future__ import annotations

from pipeline.lifecycle import PauseReason, Stage, StageStatus, Status
from pipeline.outcome import Outcome, StageContext
from pipeline.stages.common import blocking, checkout, next_select, task_from_wire
from pipeline.stages.tasklist_io import (
    TEMPLATE,
    check_outcomes,
    injected_progress,
    injections,
    outcomes_path,
    read_task_list,
)
from runner.errors import ConfigError, VerificationError
from runner.tasklist import TASK_LIST_NAMES, Task, TaskList, TaskStatus, select_next


async def init(ctx: StageContext) -> Outcome:
    """Clone or fetch; find the task list (create it from the template when missing, refuse
    to start when it is invalid); record the default branch and the totals."""
    co = await checkout(ctx)
    co = await blocking(ctx.services.git.refresh, co)
    configured = ctx.project.get("task_list_path")
    found = await read_task_list(ctx.services.git, co, configured)
    created = False
    if found is None:
        path = configured or TASK_LIST_NAMES[0]
        ctx.log.line(f"no task list found: creating {path} from the template")
        await blocking(
            ctx.services.git.commit_files,
            co,
            {path: TEMPLATE},
            f"Add {path} (DevTeam Runner template)",
        )
        await blocking(ctx.services.git.push, co, [co.default_branch])
        found = await read_task_list(ctx.services.git, co, path)
        created = True
    assert found is not None
    tasks, path = found
    done, total = tasks.progress()
    if total == 0:
        # Nothing recognised is never "done": most likely the list is written in a form
        # this reader does not know, and completing at 100% would hide that.
        made = f"{path} was created from the template; " if created else ""
        raise ConfigError(
            f"{made}{path} has no tasks: expected lines like "
            "'- [ ] 1.1 Add a health endpoint (Dependencies: [])' or checkboxes like "
            "'- [ ] Add a health endpoint (depends on 1.1)' under a heading such as "
            "'## Phase 1: Core' (see the README)",
            details={"path": path, "createdFromTemplate": created},
        )
    # the files UPDATE_TASKLIST writes: refused now (a link into .git, say), before any
    # task's work is merged, rather than after
    await blocking(ctx.services.git.check_writable, co, [path, outcomes_path(path)])
    await check_outcomes(ctx.services.git, co, outcomes_path(path))
    async with ctx.services.store.tx() as tx:
        await tx.projects.record_checkout(ctx.project["project_id"], co.default_branch, path)
    ctx.log.line(f"{path}: {total} tasks, {done} done; default branch {co.default_branch}")
    return Outcome(
        result={
            "defaultBranch": co.default_branch,
            "taskListPath": path,
            "totalTasks": total,
            "completedTasks": done,
            "head": co.head,
            "cloned": co.cloned,
            "createdTaskList": created,
        },
        next=await next_select(ctx),
        execution={"status": Status.RUNNING.value, "total_tasks": total, "completed_tasks": done},
    )


async def select(ctx: StageContext) -> Outcome:
    """The next ready task (after priority injections); nothing left ends the execution."""
    co = await blocking(ctx.services.git.refresh, await checkout(ctx))
    found = await read_task_list(ctx.services.git, co, ctx.project.get("task_list_path"))
    if found is None:
        raise ConfigError("the task list disappeared from the default branch")
    tasks, path = found
    injected = await injections(ctx.services.store, str(ctx.project["project_id"]))
    done, total = tasks.progress()
    extra_done, extra_total = await injected_progress(
        ctx.services.store, str(ctx.project["project_id"]))
    counts = {"completed_tasks": done + extra_done, "total_tasks": total + extra_total}
    single = ctx.execution.single_task_id
    if single:
        task = await _single(ctx, tasks, single)
        if task is None:
            return Outcome(
                result={"task": None, "reason": "the requested task is done"},
                finalize=Status.COMPLETED,
                execution=counts,
            )
    else:
        task = select_next(tasks, injected)  # InjectionMisfit: config
    if task is None:
        if done >= total:
            ctx.log.line(f"every task of {path} is done")
            return Outcome(
                result={"task": None, "reason": "all tasks done"},
                finalize=Status.COMPLETED,
                execution=counts,
            )
        waiting = total - done
        error = VerificationError(
            f"no task is ready: {waiting} task(s) are blocked or wait on blocked tasks",
            details={"remaining": waiting},
        )
        return Outcome(
            status=StageStatus.FAILED,
            result={"task": None, "reason": "nothing ready"},
            error=error,
            record_error=True,
            pause_reason=PauseReason.HUMAN_REVIEW,
            next=await next_select(ctx),
            execution=counts,
        )
    pass_no = await _pass_of(ctx, task.id)
    ctx.log.line(
        f"next task: {task.id} {task.title}"
        + (f" (selected again: pass {pass_no})" if pass_no > 1 else "")
    )
    return Outcome(
        result={
            "task": task.to_wire(),
            "taskListPath": path,
            "completedTasks": done,
            "totalTasks": total,
            "pass": pass_no,
        },
        next=ctx.then(Stage.PREP, task_id=task.id, pass_no=pass_no),
        execution={**counts, "current_task_id": task.id},
        task_summary={"title": task.title, "status": "selected"},
        summary_task_id=task.id,
    )


async def _pass_of(ctx: StageContext, task_id: str) -> int:
    """1 the first time a task is selected in this execution, then 2, 3..."""
    async with ctx.services.store.reads() as q:
        return await q.stage_runs.passes(ctx.execution.id, task_id) + 1


async def _single(ctx: StageContext, tasks: TaskList, task_id: str) -> Task | None:
    """The one task a ``POST /events`` with ``data.task`` asked for (None once done)."""
    async with ctx.services.store.tx() as tx:
        event = await tx.executions.event(ctx.execution.event_id)
        ran = await tx.stage_runs.done(ctx.execution.id, task_id)
    assert event is not None  # the execution's own event (a foreign key)
    data = event.data
    if ran:
        return None
    try:
        listed = tasks.get(task_id)
    except KeyError:
        return task_from_wire(dict(data)["task"])
    return None if listed.status is TaskStatus.DONE else listed
