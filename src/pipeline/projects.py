"""Operations on a project outside an execution: its task list, task edits, injections,
repository validation, and the one-step runner API (``/prep``, ``/implement``, ``/verify``).

These use the project's *manual* working copy (execution id ``manual``), separate from
every execution's own, and serialise on a lock file beside it (``flock``), so two requests
or two gateway processes on the host never edit the same copy at once. No database
transaction is held while the copy is used: the project's row is read in one short
transaction before, and what is recorded after goes in another; an Aider run or a
container run can take minutes. The kernel drops the lock when its process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from pipeline import audit, executions
from pipeline.audit import Principal
from pipeline.commands import ProjectNotFound, customer_of
from pipeline.services import Services
from pipeline.stages.common import blocking
from pipeline.stages.tasklist_io import MAX_TASK_LIST_BYTES, injections, read_task_list
from pipeline.store.projects import NewInjection
from runner.errors import ConfigError
from runner.git import Checkout, probe_remote
from runner.git.paths import workspace_paths
from runner.limits import bound_json, count
from runner.ports import ImplementRequest, OperationArtifact, VerificationResult
from runner.tasklist import TASK_LIST_NAMES, Task, TaskList, TaskListError, TaskStatus, select_next
from runner.verify import load_project_config

MANUAL = "manual"
log = structlog.get_logger("devteam.projects")


class TaskEditRefused(ConfigError):
    """An edit of one task's ``field`` that the task list cannot take: the text would not
    read back as written, or would change more of the list than that field (a title
    ``Phase 2: z`` makes the item a heading). The gateway answers 422 naming ``field``."""

    def __init__(self, task_id: str, field: str, reason: str) -> None:
        super().__init__(f"{field}: cannot change task {task_id}: {reason}",
                         details={"field": field, "taskId": task_id})
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class ProjectTasks:
    tasks: TaskList
    path: str
    injected: list[Any]
    cloned: bool = False
    """Whether reading the list cloned the project's manual working copy."""


async def project_row(services: Services, project_id: str) -> dict[str, Any]:
    async with services.store.reads() as tx:
        row = await executions.project(tx, project_id)
    if row is None:
        raise ProjectNotFound(project_id)
    return dict(row)


LOCK_POLL = (0.02, 0.5)
"""First and longest wait (seconds) between tries of a busy manual copy's lock."""


@contextlib.asynccontextmanager
async def copy_lock(path: Path) -> AsyncIterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing) for the ``async with`` block.

    Tried without blocking and retried after a growing pause, so a cancelled waiter
    leaves nothing behind (a thread blocked in ``flock`` could not be called back)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def busy(state: RetryCallState) -> None:
        if state.attempt_number == 1:
            log.info("projects.copy_busy", lock=path.name, project=path.parent.name)

    with path.open("a+b") as handle:
        first, longest = LOCK_POLL
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(BlockingIOError), before_sleep=busy,
            wait=wait_exponential(multiplier=first, max=longest),
        ):
            with attempt:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def manual_lock_path(services: Services, project: dict[str, Any]) -> Path:
    """The lock file beside the project's manual working copy."""
    paths = workspace_paths(
        services.git.root, str(project["customer_id"]), str(project["project_id"]), MANUAL
    )
    return paths.worktree.with_name(f"{MANUAL}.lock")


@contextlib.asynccontextmanager
async def manual_copy(
    services: Services, project_id: str
) -> AsyncIterator[tuple[Checkout, dict[str, Any]]]:
    """The project's manual working copy, refreshed, held under the project's lock.

    The project's row is read in a short transaction of its own; none is open while the
    caller uses the copy."""
    project = await project_row(services, project_id)
    async with copy_lock(manual_lock_path(services, project)):
        co = await blocking(
            services.git.checkout,
            str(project["customer_id"]),
            project_id,
            MANUAL,
            str(project["repository_url"]),
            project.get("default_branch"),
        )
        co = await blocking(services.git.refresh, co)
        yield co, project


async def project_tasks(services: Services, project_id: str) -> ProjectTasks:
    """The task list on the default branch (ConfigError with line numbers when broken)."""
    async with manual_copy(services, project_id) as (co, project):
        found = await read_task_list(services.git, co, project.get("task_list_path"))
    if found is None:
        raise ConfigError("the repository has no task list (tasks_list.md or task_lists.md)")
    tasks, path = found
    return ProjectTasks(tasks, path, await injections(services.store, project_id), co.cloned)


async def next_task(services: Services, project_id: str) -> dict[str, Any]:
    """CONTRACTS ``GET /tasks/next``.

    An injection that no longer fits the list (the task it replaces was renamed or
    removed, its position is past the end) is ``select_next``'s InjectionMisfit, a
    ConfigError, as in the SELECT stage."""
    view = await project_tasks(services, project_id)
    task = select_next(view.tasks, view.injected)
    done, total = view.tasks.progress()
    return {
        "task": task.to_wire() if task else None,
        "dependenciesSatisfied": task is not None,
        "totalTasks": total,
        "completedTasks": done,
        "progress": (100 * done // total) if total else 0,
    }


async def update_task(
    services: Services,
    principal: Principal,
    project_id: str,
    task_id: str,
    *,
    status: str | None = None,
    title: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """Edit one task in the task list, commit and push; returns the updated definition.

    ``TaskEditRefused`` (``config``, naming the field) when the list cannot take the edit;
    nothing is committed then."""
    async with manual_copy(services, project_id) as (co, project):
        found = await read_task_list(services.git, co, project.get("task_list_path"))
        if found is None:
            raise ConfigError("the repository has no task list")
        tasks, path = found
        if task_id not in tasks:
            raise LookupError(f"no task {task_id} in {path}")
        edited = tasks
        # one field at a time, so a refusal names the field it is about
        for field, value in (("title", title), ("description", description),
                             ("status", status)):
            if value is None:
                continue
            try:
                if field == "status":
                    edited = edited.with_status(task_id, TaskStatus(value))
                else:
                    edited = edited.with_fields(task_id, **{field: value})
            except (ValueError, TaskListError) as exc:
                raise TaskEditRefused(task_id, field, str(exc)) from None
        changed = edited.render() != tasks.render()
        if changed:
            await blocking(
                services.git.commit_files,
                co,
                {path: edited.render()},
                f"Update task {task_id}",
                {"Task-Id": task_id, "Updated-By": principal.user_id},
            )
            await blocking(services.git.push, co, [co.default_branch])
    async with services.store.tx() as tx:
        await audit.record(
            tx,
            principal=principal,
            action="task.update",
            project_id=project_id,
            details={
                "taskId": task_id,
                "status": status,
                "title": title,
                "descriptionChanged": description is not None,
                "committed": changed,
            },
        )
    return edited.get(task_id).to_wire()


async def inject_task(
    services: Services,
    principal: Principal,
    project_id: str,
    *,
    injection_type: str,
    task: dict[str, Any],
    reason: str,
    position: int | None = None,
    replace_task_id: str | None = None,
) -> tuple[str, int]:
    """Add a task from outside the file; validated against the list. ``(taskId, id)``."""
    view = await project_tasks(services, project_id)
    leaves = view.tasks.leaves()
    if injection_type == "replace" and (
        replace_task_id is None
        or replace_task_id not in view.tasks
        or not any(leaf.id == replace_task_id for leaf in leaves)
    ):
        raise ConfigError(
                f"replaceTaskId {replace_task_id!r} is not an atomic task of {view.path}"
            )
    if injection_type == "positional" and (position is None or position > len(leaves)):
        raise ConfigError(f"position must be between 0 and {len(leaves)}")
    async with services.store.tx() as tx:
        task_id, injection_id = await tx.projects.inject(msgspec.convert(
            {"project_id": project_id, "injection_type": injection_type, "position": position,
             "replace_task_id": replace_task_id, "task": task, "reason": reason,
             "created_by": principal.user_id}, NewInjection))
        await audit.record(
            tx,
            principal=principal,
            action="task.inject",
            project_id=project_id,
            details={
                "taskId": task_id,
                "type": injection_type,
                "replaceTaskId": replace_task_id,
                "position": position,
                "reason": reason,
            },
        )
    return task_id, injection_id


async def validate_repository(
    services: Services,
    url: str,
    *,
    branch: str | None,
    task_list_path: str | None,
    customer_id: str,
) -> dict[str, Any]:
    """CONTRACTS ``POST /api/devteam/repository/validate``: problems are results."""
    names = [task_list_path] if task_list_path else list(TASK_LIST_NAMES)
    info = await blocking(
        probe_remote,
        url,
        customer_id,
        services.credentials,
        branch=branch,
        paths=names,
        settings=services.settings,
        policy=services.repositories,
    )
    problems: list[str] = []
    count = 0
    if not info.reachable:
        problems.append(info.error or "the repository cannot be reached")
    elif info.error:  # reachable, but the branch is missing or could not be fetched
        problems.append(info.error)
    elif info.file_bytes is None:
        problems.append(f"no task list found ({', '.join(names)})")
    elif len(info.file_bytes) > MAX_TASK_LIST_BYTES:
        problems.append(f"{info.file_path} is larger than {MAX_TASK_LIST_BYTES} bytes")
    else:
        try:
            parsed = await blocking(
                TaskList.parse, info.file_bytes.decode("utf-8"), source=str(info.file_path)
            )
            count = len(parsed.leaves())
        except UnicodeDecodeError:
            problems.append(f"{info.file_path} is not UTF-8 text")
        except TaskListError as exc:
            problems += [f"{info.file_path}:{p.line}: {p.message}" for p in exc.problems]
    return {
        "valid": not problems,
        "defaultBranch": info.default_branch,
        "hasTaskList": info.file_bytes is not None,
        "taskListPath": info.file_path,
        "taskCount": count,
        "problems": problems,
    }


# ---------------------------------------------------------------------------- one step
async def _task(services: Services, project_id: str, task_id: str) -> tuple[Task, bool]:
    """The task (from the file or injected) and whether finding it cloned the copy."""
    view = await project_tasks(services, project_id)
    for injected in view.injected:
        if injected.task.id == task_id:
            return injected.task, view.cloned
    try:
        return view.tasks.get(task_id), view.cloned
    except KeyError:
        raise LookupError(f"no task {task_id} in {view.path}") from None


async def prep(services: Services, project_id: str, task_id: str) -> dict[str, Any]:
    task, cloned = await _task(services, project_id, task_id)
    async with manual_copy(services, project_id) as (co, _):
        branch = await blocking(services.git.create_task_branch, co, task.id, task.title)
    return {
        "taskId": task.id,
        "branch": branch.branch,
        "repoPath": str(co.path),
        "artifacts": {"cloned": cloned or co.cloned, "branchCreated": branch.created},
    }


async def implement(
    services: Services, project_id: str, task_id: str, branch: str
) -> OperationArtifact:
    task, _ = await _task(services, project_id, task_id)
    async with manual_copy(services, project_id) as (co, _):
        # The base before the tool runs: creating/checking out the task branch afterwards
        # would reset the working tree and throw the tool's change away.
        base = await blocking(services.git.create_task_branch, co, task.id, task.title)
        await blocking(services.git.reset_branch, co, branch, f"refs/heads/{branch}")
        request = ImplementRequest.for_task(task, co.path)
        artifact = await blocking(services.tool.implement, request)
        if artifact.success:
            await blocking(
                services.git.commit_task,
                co,
                branch,
                base.base_commit,
                f"{task.id}: {task.title}",
                {"Task-Id": task.id},
            )
    return _bounded(services, artifact)


def _bounded(services: Services, artifact: OperationArtifact) -> OperationArtifact:
    """The artifact with its texts (the diff, the tool's output) cut to what a stage
    result may hold: the answer is as bounded as what the pipeline stores."""
    limit = services.settings.limits.stage_result_bytes
    wire = bound_json(msgspec.to_builtins(artifact), limit,
                      what=f"{count(limit)} bytes per stage result")
    return msgspec.convert(wire, OperationArtifact)


async def verify(
    services: Services, project_id: str, task_id: str, branch: str, criteria: dict[str, str] | None
) -> VerificationResult:
    task, _ = await _task(services, project_id, task_id)
    async with manual_copy(services, project_id) as (co, project):
        await blocking(services.git.reset_branch, co, branch, f"refs/heads/{branch}")
        config = await blocking(load_project_config, co.path)
        changed = await blocking(
            services.git.diff_paths, co, f"refs/heads/{co.default_branch}", f"refs/heads/{branch}"
        )
        spec = services.container_spec(
            project=project,
            execution_id=f"manual-{uuid.uuid4().hex[:12]}",
            task_id=task.id,
            attempt=1,
        )
        session = await blocking(services.sandbox.session, spec)
        try:
            await blocking(session.copy_in, co.path)
            return await blocking(
                services.verifier.verify,
                task.id,
                criteria if criteria is not None else dict(task.criteria),
                config,
                session,
                changed,
            )
        finally:
            await blocking(services.sandbox.remove, spec)


__all__ = ["MANUAL", "ProjectNotFound", "customer_of"]
