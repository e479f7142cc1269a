"""The one-step runner API: ``POST /prep``, ``/implement``, ``/verify`` and
``GET /tasks/next``.

Each runs the same runner code a pipeline stage runs, synchronously, on the project's
*manual* working copy (never an execution's). The three POSTs change a repository, so they
are writes (developer on the project, or admin), idempotent per ``Idempotency-Key``, and
audited; they run outside a database transaction (``atomic=False``) because their effect
lives in git and in a container, and an Aider or Docker run takes seconds. A failed tool
run or unmet criteria is a result (200 with ``success: false``), not an HTTP error.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.openapi.spec import Example
from litestar.params import Body, QueryParameter

from gateway import idempotency
from gateway.auth import require_read, require_write
from gateway.http import (
    docs,
    principal_of,
    project_param,
    record_change,
    respond,
    services_of,
    store_of,
)
from gateway.routes.errors import command_errors
from gateway.schemas import (
    PROJECT_PATTERN,
    ImplementRequestBody,
    NextTask,
    PrepRequest,
    PrepResult,
    VerifyRequestBody,
)
from pipeline import projects
from runner.ports import OperationArtifact, VerificationResult

PROJECT = "customer-123/project-abc"
BRANCH = "task/1-1-add-and-subtract"
TASK_EXAMPLE = {
    "id": "1.1", "title": "Add and subtract", "description": "", "type": "atomic",
    "dependencies": [], "files": ["src/calc/basic.py", "tests/test_basic.py"],
    "criteria": {"test.coverage": "≥80%"}, "notes": [], "status": "pending", "parent": "1",
}
_ERRORS = (404, 409, 422, 503)


def _example(value: dict[str, Any]) -> list[Example]:
    return [Example(summary="example", value=value)]


@post(
    "/prep",
    status_code=200,
    summary="Check out the task's branch in the project's working copy",
    description="Branch `task/<id dots→dashes>-<kebab-title>` from the up-to-date default "
    "branch (reused when it exists).",
    responses=docs(200, PrepResult, {
        "taskId": "1.1", "branch": BRANCH, "repoPath": "/var/lib/devteam/ws/…/manual",
        "artifacts": {"cloned": True, "branchCreated": True}}, *_ERRORS),
    tags=["core"],
)
async def prep(
    request: Request[Any, Any, Any],
    data: Annotated[PrepRequest, Body(examples=_example({"projectId": PROJECT, "taskId": "1.1"}))],
) -> Response[bytes]:
    principal = principal_of(request)
    require_write(principal, data.project_id)

    async def operation() -> Response[bytes]:
        with command_errors():
            result = await projects.prep(services_of(request), data.project_id, data.task_id)
        await record_change(request, "task.prep", data.project_id, {
            "taskId": data.task_id, "branch": result["branch"],
            "branchCreated": result["artifacts"]["branchCreated"]})
        return respond(msgspec.convert(result, PrepResult))

    return await idempotency.run(store_of(request), request, principal, operation, atomic=False)


@post(
    "/implement",
    status_code=200,
    summary="Run the coding tool (Aider) for one task on its branch",
    description="Commits the change as the branch's single task commit. A failed run is "
    "an artifact with `success: false`.",
    responses=docs(200, OperationArtifact, {
        "operation": "implement", "taskId": "1.1", "tool": "aider", "success": True,
        "duration": 8.4, "outputs": {"diff": "--- a/src/calc/basic.py\n+++ b/…",
                                     "stdout": "Applied edit to src/calc/basic.py",
                                     "filesModified": ["src/calc/basic.py"],
                                     "linesChanged": 12}, "error": None}, *_ERRORS),
    tags=["core"],
)
async def implement(
    request: Request[Any, Any, Any],
    data: Annotated[ImplementRequestBody, Body(examples=_example(
        {"projectId": PROJECT, "taskId": "1.1", "branch": BRANCH, "tool": "aider"}))],
) -> Response[bytes]:
    principal = principal_of(request)
    require_write(principal, data.project_id)

    async def operation() -> Response[bytes]:
        with command_errors():
            artifact = await projects.implement(services_of(request), data.project_id,
                                                data.task_id, data.branch)
        await record_change(request, "task.implement", data.project_id, {
            "taskId": data.task_id, "branch": data.branch, "tool": data.tool,
            "success": artifact.success,
            "filesModified": list(artifact.outputs.files_modified)})
        return respond(artifact)

    return await idempotency.run(store_of(request), request, principal, operation, atomic=False)


@post(
    "/verify",
    status_code=200,
    summary="Run the project's checks on the task's branch in a sandbox",
    description="Criteria default to the task's own. Criteria not met is a result "
    "(`success: false`), not an HTTP error.",
    responses=docs(200, VerificationResult, {
        "taskId": "1.1", "success": True,
        "results": {"test.coverage": {"passed": True, "actual": 92.0, "required": 80.0,
                                      "detail": None}},
        "commands": [], "notes": [], "feedback": None}, *_ERRORS),
    tags=["core"],
)
async def verify(
    request: Request[Any, Any, Any],
    data: Annotated[VerifyRequestBody, Body(examples=_example(
        {"projectId": PROJECT, "taskId": "1.1", "branch": BRANCH,
         "criteria": {"test.coverage": "≥80%"}}))],
) -> Response[bytes]:
    principal = principal_of(request)
    require_write(principal, data.project_id)

    async def operation() -> Response[bytes]:
        with command_errors():
            result = await projects.verify(services_of(request), data.project_id,
                                           data.task_id, data.branch, data.criteria)
        await record_change(request, "task.verify", data.project_id, {
            "taskId": data.task_id, "branch": data.branch, "success": result.success,
            "results": {name: r.passed for name, r in result.results.items()}})
        return respond(result)

    return await idempotency.run(store_of(request), request, principal, operation, atomic=False)


@get(
    "/tasks/next",
    summary="The next ready task of a project's task list",
    description="`task` is null when nothing is ready (all done, or all waiting).",
    responses=docs(200, NextTask, {
        "task": TASK_EXAMPLE, "dependenciesSatisfied": True, "totalTasks": 6,
        "completedTasks": 0, "progress": 0}, 404, 422, 503),
    tags=["core"],
)
async def next_task(
    request: Request[Any, Any, Any],
    project: Annotated[str, QueryParameter(name="projectId", max_length=200,
                                           pattern=PROJECT_PATTERN,
                                           description="customer/project",
                                           examples=[Example(value=PROJECT)])],
) -> Response[bytes]:
    project_id = project_param(project)
    require_read(principal_of(request), project_id)
    with command_errors():
        result = await projects.next_task(services_of(request), project_id)
    return respond(msgspec.convert(result, NextTask))


handlers = [prep, implement, verify, next_task]
