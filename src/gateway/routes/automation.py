"""``/api/devteam/automation/...``: initialize, status, pause, resume, stop."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.openapi.spec import Example
from litestar.params import Body

from gateway import idempotency
from gateway.auth import require_read, require_write
from gateway.http import (
    ProjectPath,
    actor_of,
    docs,
    principal_of,
    project_param,
    respond,
    services_of,
    settings_of,
    statuses_of,
    store_of,
)
from gateway.problems import Problem
from gateway.repositories import require_allowed
from gateway.routes.errors import command_errors
from gateway.schemas import (
    ExecutionStatus,
    InitializeAccepted,
    InitializeRequest,
    TransitionAccepted,
)
from pipeline import commands, usage

BASE = "/api/devteam/automation"
STATUS_EXAMPLE = {
    "executionId": "9b1d…", "projectId": "customer-123/project-abc", "customerId": "customer-123",
    "status": "running", "progress": 40, "currentTask": "1.2.1", "currentStage": "VERIFY",
    "branch": "task/1-2-1-run-migrations", "totals": {"completed": 4, "total": 10},
    "startedAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:01:00.000Z",
}


@post(
    f"{BASE}/initialize",
    status_code=202,
    summary="Start running a project's task list",
    responses=docs(202, InitializeAccepted,
                   {"executionId": "9b1d…", "eventId": "5f0c…", "status": "initializing"},
                   404, 409, 422),
    tags=["automation"],
)
async def initialize(
    request: Request[Any, Any, Any],
    data: Annotated[InitializeRequest, Body(examples=[Example(summary="first run", value={
        "projectId": "customer-123/project-new",
        "repositoryUrl": "https://github.com/acme/web.git", "stopPoint": "2.1.1"})])],
) -> Response[bytes]:
    principal = principal_of(request)
    require_write(principal, data.project_id)
    if data.repository_url is not None:
        await require_allowed(services_of(request), commands.customer_of(data.project_id),
                              data.repository_url, "repositoryUrl")

    async def operation() -> Response[bytes]:
        with command_errors():
            started = await commands.start_execution(
                store_of(request),
                principal=actor_of(request),
                project_id=data.project_id,
                repository_url=data.repository_url,
                stop_point=data.stop_point,
                event_data={
                    "projectId": data.project_id, "source": "initialize",
                    **({"options": {"stopPoint": data.stop_point}} if data.stop_point else {}),
                },
            )
        return respond(
            InitializeAccepted(execution_id=str(started.execution_id),
                               event_id=str(started.event_id), status=started.status),
            202,
        )

    return await idempotency.run(store_of(request), request, principal, operation,
                                 single=True)


@get(
    f"{BASE}/status/{{project:path}}",
    summary="Where a project's execution is now",
    responses=docs(200, ExecutionStatus, STATUS_EXAMPLE, 404),
    tags=["automation"],
)
async def status(request: Request[Any, Any, Any], project: ProjectPath) -> Response[bytes]:
    project_id = project_param(project)
    require_read(principal_of(request), project_id)
    found = await statuses_of(request).load(project_id)
    if found is None:
        raise Problem(404, "this project has never run")
    box = settings_of(request).sandbox
    wait = None if found.wait is None else found.wait.view(
        global_limit=box.max_containers, per_customer=box.max_containers_per_customer)
    setup = None if found.setup is None else found.setup.view()
    return respond(msgspec.convert(
        {**found.execution.status_view(), "setup": setup, "slotWait": wait,
         "usage": usage.view(found.usage)}, ExecutionStatus))


def _transition(name: str, action: Any, summary: str) -> Any:
    @post(
        f"{BASE}/{name}/{{project:path}}",
        status_code=200,
        summary=summary,
        responses=docs(200, TransitionAccepted,
                       {"executionId": "9b1d…", "previousStatus": "running", "status": "paused"},
                       404, 409, 422),
        tags=["automation"],
        name=f"automation-{name}",
    )
    async def handler(request: Request[Any, Any, Any], project: ProjectPath) -> Response[bytes]:
        project_id = project_param(project)
        principal = principal_of(request)
        require_write(principal, project_id)

        async def operation() -> Response[bytes]:
            with command_errors():
                result = await action(
                    store_of(request), principal=actor_of(request), project_id=project_id
                )
            return respond(result.wire())

        return await idempotency.run(store_of(request), request, principal, operation)

    return handler


pause = _transition("pause", commands.pause, "Pause at the next stage boundary")
resume = _transition("resume", commands.resume, "Resume from where it paused")
stop = _transition("stop", commands.stop, "Stop: cancel the running step, clean up")

handlers = [initialize, status, pause, resume, stop]
