"""``/api/devteam/repository/...`` and ``/api/devteam/tasks/inject``: a project's
repository and task list outside an execution.

- ``POST repository/validate`` probes a URL (reachability, credentials, the task list)
  as the customer would use it: a URL the customer may not use, or one that cannot be
  reached, is a result (``valid: false`` with ``problems``, the same words whatever the
  cause), and nothing is sent anywhere for a URL the policy refuses. A URL carrying
  credentials is a 422. It changes nothing, so any authenticated role may call it.
- ``GET repository/tasks/{projectId}`` lists the task list in file order (read).
- ``PUT repository/tasks/{projectId}/{taskId}`` edits one task and commits the change
  to the task list (write, idempotent, audited by the pipeline). An edit the list cannot
  take (a title that would turn the item into a heading) is a 422 naming the field.
- ``POST tasks/inject`` adds a task from outside the file (write, idempotent, audited).

``projectId`` contains a slash (or ``%2F``), so the task routes take the rest of the path
and split it: the last segment of a PUT is the task id.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post, put
from litestar.openapi.spec import Example
from litestar.params import Body

from gateway import idempotency
from gateway.auth import Principal, require_read, require_write
from gateway.http import (
    ProjectPath,
    TaskPath,
    actor_of,
    docs,
    principal_of,
    project_param,
    respond,
    services_of,
    store_of,
)
from gateway.problems import Problem
from gateway.repositories import refuse_credentials
from gateway.routes.core import PROJECT, TASK_EXAMPLE
from gateway.routes.errors import command_errors
from gateway.schemas import (
    InjectAccepted,
    InjectRequest,
    RepositoryValidateRequest,
    RepositoryValidation,
    TaskDefinition,
    TaskList,
    TaskUpdate,
)
from pipeline import projects

BASE = "/api/devteam/repository"
_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
_ERRORS = (404, 409, 422, 503)


def _example(value: dict[str, Any]) -> list[Example]:
    return [Example(summary="example", value=value)]


def _probing_customer(principal: Principal, project_id: str | None) -> str:
    """Whose repository policy and git credentials a probe uses: the named project's
    customer (the token must grant the project), else the caller's customer when the
    token names exactly one; otherwise none (only what the operator allows every customer,
    and no credentials), so a probe never borrows another customer's access."""
    if project_id is not None:
        require_read(principal, project_id)
        return projects.customer_of(project_id)
    customers = {p.split("/", 1)[0] for p in principal.projects}
    return customers.pop() if len(customers) == 1 and not principal.is_admin else ""


@post(
    f"{BASE}/validate",
    status_code=200,
    summary="Check a repository: reachable, its default branch, its task list",
    responses=docs(200, RepositoryValidation, {
        "valid": True, "defaultBranch": "main", "hasTaskList": True,
        "taskListPath": "tasks_list.md", "taskCount": 6, "problems": []}, 422, 503),
    tags=["repository"],
)
async def validate(
    request: Request[Any, Any, Any],
    data: Annotated[RepositoryValidateRequest, Body(examples=_example(
        {"repositoryUrl": "https://github.com/acme/web.git", "branch": "main",
         "taskListPath": "tasks_list.md"}))],
) -> Response[bytes]:
    principal = principal_of(request)
    customer = _probing_customer(principal, data.project_id)
    refuse_credentials(data.repository_url, "repositoryUrl")
    with command_errors():
        result = await projects.validate_repository(
            services_of(request), data.repository_url, branch=data.branch,
            task_list_path=data.task_list_path, customer_id=customer,
        )
    return respond(msgspec.convert(result, RepositoryValidation))


@get(
    f"{BASE}/tasks/{{rest:path}}",
    summary="The project's task list, in file order",
    responses=docs(200, TaskList, {"tasks": [TASK_EXAMPLE]}, *_ERRORS),
    tags=["repository"],
)
async def list_tasks(request: Request[Any, Any, Any], rest: ProjectPath) -> Response[bytes]:
    project_id = project_param(rest)
    require_read(principal_of(request), project_id)
    with command_errors():
        view = await projects.project_tasks(services_of(request), project_id)
    return respond(TaskList(tasks=[msgspec.convert(t.to_wire(), TaskDefinition)
                                   for t in view.tasks.tasks]))


def _split_task(rest: str) -> tuple[str, str]:
    """``customer/project/taskId`` → ``(projectId, taskId)``; 400 naming the bad part."""
    head, _, task_id = rest.lstrip("/").rpartition("/")
    project_id = project_param(head)
    if not _TASK_ID.match(task_id):
        raise Problem(400, "taskId must be a task id such as 1.2.3",
                      errors=[{"field": "taskId", "message": "must be a task id such as 1.2.3"}])
    return project_id, task_id


@put(
    f"{BASE}/tasks/{{rest:path}}",
    status_code=200,
    summary="Edit one task (status, title, description); committed to the task list",
    description="The path is `{projectId}/{taskId}`.",
    responses=docs(200, TaskDefinition, {**TASK_EXAMPLE, "status": "done"}, *_ERRORS),
    tags=["repository"],
)
async def update_task(
    request: Request[Any, Any, Any],
    rest: TaskPath,
    data: Annotated[TaskUpdate, Body(examples=_example({"status": "done"}))],
) -> Response[bytes]:
    project_id, task_id = _split_task(rest)
    principal = principal_of(request)
    require_write(principal, project_id)

    async def operation() -> Response[bytes]:
        with command_errors():
            try:
                wire = await projects.update_task(
                    services_of(request), actor_of(request), project_id, task_id,
                    status=data.status, title=data.title, description=data.description,
                )
            except projects.TaskEditRefused as exc:
                raise Problem(422, exc.message, classification=str(exc.classification),
                              errors=[{"field": exc.field, "message": exc.reason}]) from None
        return respond(msgspec.convert(wire, TaskDefinition))

    return await idempotency.run(store_of(request), request, principal, operation)


@post(
    "/api/devteam/tasks/inject",
    status_code=201,
    summary="Add a task from outside the task list (priority, replace, positional)",
    responses=docs(201, InjectAccepted, {"taskId": "inj-7", "injectionId": "7"}, *_ERRORS),
    tags=["repository"],
)
async def inject(
    request: Request[Any, Any, Any],
    data: Annotated[InjectRequest, Body(examples=_example({
        "projectId": PROJECT, "injectionType": "priority",
        "task": {"title": "Fix the login redirect", "description": "Users land on /404.",
                 "type": "atomic", "files": ["src/auth.py"], "criteria": {"test.pass": "pass"}},
        "reason": "customer escalation"}))],
) -> Response[bytes]:
    principal = principal_of(request)
    require_write(principal, data.project_id)

    async def operation() -> Response[bytes]:
        with command_errors():
            task_id, injection_id = await projects.inject_task(
                services_of(request), actor_of(request), data.project_id,
                injection_type=data.injection_type, task=msgspec.to_builtins(data.task),
                reason=data.reason, position=data.position, replace_task_id=data.replace_task_id,
            )
        return respond(InjectAccepted(task_id=task_id, injection_id=str(injection_id)), 201)

    return await idempotency.run(store_of(request), request, principal, operation)


handlers = [validate, list_tasks, update_task, inject]
