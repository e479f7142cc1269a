"""Error records and the active/history lists of executions."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get
from litestar.params import FromPath, PathParameter, QueryParameter

from gateway.auth import Principal, require_read
from gateway.http import docs, principal_of, respond, services_of, store_of
from gateway.problems import Problem
from gateway.routes.automation import STATUS_EXAMPLE
from gateway.schemas import END, ErrorView, ExecutionStatus
from pipeline.stream import iso


@get(
    "/api/devteam/errors/{execution_id:uuid}/{error_id:uuid}",
    summary="A classified error record, redacted",
    responses=docs(200, ErrorView, {
        "errorId": "e1…", "executionId": "9b1d…", "taskId": "1.2.1", "stage": "VERIFY",
        "classification": "verification", "message": "test.coverage 61% < 80%",
        "details": {}, "attempts": 3, "createdAt": "2026-01-01T00:00:00.000Z"}, 404),
    tags=["executions"],
)
async def read_error(
    request: Request[Any, Any, Any],
    execution_id: FromPath[uuid.UUID],
    error_id: FromPath[uuid.UUID],
) -> Response[bytes]:
    principal = principal_of(request)
    async with store_of(request).reads() as q:
        row = await q.executions.error(execution_id, error_id)
    if row is None:
        raise Problem(404, "no such error for this execution")
    require_read(principal, row.project_id)
    # Redacted when written too; again here, with this gateway's credentials, in case an
    # older record or another writer let something through.
    redactor = services_of(request).redactor
    return respond(
        ErrorView(
            error_id=str(row.id), execution_id=str(row.execution_id), task_id=row.task_id,
            stage=row.stage, classification=row.classification,
            message=redactor.redact(row.message), details=redactor.redact_obj(row.details),
            attempts=row.attempts, created_at=iso(row.created_at),
        )
    )


async def _list(
    request: Request[Any, Any, Any], user_id: str, *, active: bool, limit: int
) -> Response[bytes]:
    principal = principal_of(request)
    own = user_id == principal.user_id
    if principal.role == "developer" and not own:
        raise Problem(403, "developers may only list their own executions")
    projects, customers = principal.scope()
    # A manager (or admin) asking for themselves sees everything in their projects.
    by_user = None if (own and principal.role in ("manager", "admin")) else user_id
    async with store_of(request).reads() as q:
        rows = await q.executions.list_for(
            user_id=by_user, project_ids=projects, customer_ids=customers,
            active_only=active, limit=limit,
        )
    visible = [r for r in rows if _visible(principal, r.project_id)]
    return respond([msgspec.convert(r.summary(), ExecutionStatus) for r in visible])


def _visible(principal: Principal, project_id: str) -> bool:
    try:
        require_read(principal, project_id)
    except Problem:
        return False
    return True


UserId = Annotated[str, PathParameter(pattern=r"^[A-Za-z0-9@._:-]{1,200}" + END, max_length=200)]


@get(
    "/api/devteam/executions/active/{user_id:str}",
    summary="Active executions, newest first (a manager sees their projects')",
    responses=docs(200, list[ExecutionStatus], [STATUS_EXAMPLE]),
    tags=["executions"],
)
async def active(request: Request[Any, Any, Any], user_id: UserId) -> Response[bytes]:
    return await _list(request, user_id, active=True, limit=500)


@get(
    "/api/devteam/executions/history/{user_id:str}",
    summary="Past and present executions, newest first",
    responses=docs(200, list[ExecutionStatus], [STATUS_EXAMPLE]),
    tags=["executions"],
)
async def history(
    request: Request[Any, Any, Any],
    user_id: UserId,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
) -> Response[bytes]:
    return await _list(request, user_id, active=False, limit=limit)


handlers = [read_error, active, history]
