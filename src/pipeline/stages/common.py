"""What the stage handlers share: the working copy, recorded results, the current task."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from pipeline.lifecycle import Stage
from pipeline.outbox import StageCommand
from pipeline.outcome import StageContext
from runner.errors import ConfigError
from runner.git import Checkout
from runner.tasklist import Task, TaskStatus, TaskType

P = ParamSpec("P")
T = TypeVar("T")


async def blocking(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking runner call (pygit2, docker-py, a subprocess) in a worker thread."""
    return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))


async def checkout(ctx: StageContext) -> Checkout:
    """The execution's working copy (cloned on first use, reused after)."""
    project = ctx.project
    return await blocking(
        ctx.services.git.checkout,
        str(project["customer_id"]),
        str(project["project_id"]),
        str(ctx.execution.id),
        str(project["repository_url"]),
        project.get("default_branch"),
    )


async def result_of(
    ctx: StageContext, stage: Stage, task_id: str | None = None, attempt: int | None = None
) -> dict[str, Any] | None:
    """The recorded result of the latest succeeded (or failed) run of a stage of this task."""
    async with ctx.services.store.reads() as q:
        return await q.stage_runs.result(
            ctx.execution.id, ctx.task_id if task_id is None else task_id, stage.value,
            ctx.command.pass_no, attempt)


async def current_task(ctx: StageContext) -> Task:
    """The task this command works on, as SELECT recorded it when it picked it."""
    async with ctx.services.store.reads() as q:
        selected = await q.stage_runs.selection(ctx.execution.id, ctx.task_id)
    if not selected:
        raise ConfigError(f"task {ctx.task_id} was never selected in this execution")
    return task_from_wire(selected["task"])


def task_from_wire(wire: dict[str, Any]) -> Task:
    return Task(
        id=str(wire["id"]),
        title=str(wire.get("title") or wire["id"]),
        description=str(wire.get("description") or ""),
        type=TaskType(wire.get("type") or "atomic"),
        parent=wire.get("parent"),
        dependencies=tuple(wire.get("dependencies") or ()),
        files=tuple(wire.get("files") or ()),
        criteria=dict(wire.get("criteria") or {}),
        notes=tuple(wire.get("notes") or ()),
        status=TaskStatus(wire.get("status") or "pending"),
        line=int(wire.get("line") or 0),
    )


async def next_select(ctx: StageContext) -> StageCommand:
    """The command for the next SELECT: keyed ``#<n>`` by how many SELECTs ran before."""
    async with ctx.services.store.reads() as q:
        count = await q.stage_runs.selects(ctx.execution.id)
    return ctx.then(Stage.SELECT, task_id=f"#{count + 1}")


async def drop_task_containers(ctx: StageContext) -> None:
    """Remove this task's containers (one per round): the task is done, or set aside (a
    resolution task, a person) and must not hold sandbox slots meanwhile."""
    for attempt in range(1, ctx.services.settings.pipeline.verify_rounds + 1):
        spec = ctx.services.container_spec(
            project=ctx.project, execution_id=str(ctx.execution.id), task_id=ctx.task_id,
            attempt=attempt,
        )
        await blocking(ctx.services.sandbox.remove, spec)
