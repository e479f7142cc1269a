"""``POST /events`` and ``GET /events/{eventId}``: the event API of the existing system."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.openapi.spec import Example
from litestar.params import Body, FromPath

from gateway import idempotency
from gateway.auth import require_read, require_write
from gateway.http import docs, principal_of, respond, services_of, store_of
from gateway.problems import Problem
from gateway.repositories import require_allowed
from gateway.routes.errors import command_errors
from gateway.schemas import EventAccepted, EventCreate, EventRecord
from pipeline import commands
from pipeline.audit import Principal as Actor
from pipeline.stream import iso

EVENT_EXAMPLE = {
    "workflow_type": "DEVTEAM_AUTOMATION",
    "data": {"projectId": "customer-123/project-abc", "options": {"stopPoint": "2.1.1"}},
}


@post(
    "/events",
    status_code=202,
    summary="Submit an event: run the project's task list, or one task",
    responses=docs(
        202,
        EventAccepted,
        {"event_id": "5f0c…", "task_id": "42", "status": "accepted", "correlationId": "c0ffee"},
        404, 409, 422,
    ),
    tags=["events"],
)
async def create_event(
    request: Request[Any, Any, Any],
    data: Annotated[
        EventCreate, Body(examples=[Example(summary="run a task list", value=EVENT_EXAMPLE)])
    ],
) -> Response[bytes]:
    principal = principal_of(request)
    project_id = data.data.project_id
    require_write(principal, project_id)
    if data.data.repository_url is not None:
        await require_allowed(services_of(request), commands.customer_of(project_id),
                              data.data.repository_url, "data.repositoryUrl")
    options = data.data.options
    actor = Actor(
        user_id=principal.user_id,
        role=principal.role,
        correlation_id=str(request.scope["state"]["correlation_id"]),
    )

    async def operation() -> Response[bytes]:
        with command_errors():
            started = await commands.start_execution(
                store_of(request),
                principal=actor,
                project_id=project_id,
                repository_url=data.data.repository_url,
                stop_point=options.stop_point if options else None,
                task=msgspec.to_builtins(data.data.task) if data.data.task else None,
                idempotency_key=options.idempotency_key if options else None,
                event_data=msgspec.to_builtins(data.data),
            )
        return respond(
            EventAccepted(
                event_id=str(started.event_id),
                task_id=str(started.command_id),
                correlationId=started.correlation_id,
            ),
            202,
        )

    return await idempotency.run(store_of(request), request, principal, operation,
                                 single=True)


@get(
    "/events/{event_id:uuid}",
    summary="An event record with its task context",
    responses=docs(
        200,
        EventRecord,
        {"event_id": "5f0c…", "workflow_type": "DEVTEAM_AUTOMATION", "data": {},
         "task_context": {"nodes": {}, "metadata": {"correlationId": "c0ffee"}},
         "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.000Z",
         "correlationId": "c0ffee"},
        404,
    ),
    tags=["events"],
)
async def read_event(
    request: Request[Any, Any, Any], event_id: FromPath[uuid.UUID]
) -> Response[bytes]:
    principal = principal_of(request)
    async with store_of(request).reads() as q:
        row = await q.executions.event(event_id)
    if row is None:
        raise Problem(404, "no such event")
    require_read(principal, row.project_id)
    return respond(
        EventRecord(
            event_id=str(row.id),
            workflow_type=row.workflow_type,
            data=row.data,
            task_context=row.task_context,
            created_at=iso(row.created_at),
            updated_at=iso(row.updated_at),
            correlationId=row.correlation_id,
            executionId=str(row.execution_id) if row.execution_id else None,
        )
    )


handlers = [create_event, read_event]
