"""``GET /api/devteam/executions/{executionId}``: one execution in detail (the dashboard's
execution view).

Who sees it: whoever may read the execution's project, whoever started it, as for the
project's status (``GET /api/devteam/automation/status/{projectId}``), its error records and
its stream. An unknown id is 404; a token that does not grant the project gets 403
(as ``GET /api/devteam/errors/...``), whatever the role.

``actions`` says what ``POST /api/devteam/automation/{pause|resume|stop}/{projectId}``
would accept from this token now: the lifecycle's transition table from the execution's
status, and the gate those endpoints pass (``require_write``: a manager's are all false).
Those endpoints act on the project's latest execution; an execution that is not the latest
is never active (at most one active execution per project, a unique index), so the table
already offers it nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.params import FromPath

from gateway.auth import Principal, require_read, require_write
from gateway.http import docs, principal_of, respond, services_of, store_of
from gateway.problems import Problem
from gateway.schemas import Totals
from pipeline import detail


class _View(msgspec.Struct, rename="camel", kw_only=True):
    pass


class UsageView(_View):
    """Summed over stage runs; null when none of them reported the figure."""

    tokens_sent: int | None
    tokens_received: int | None
    cost: float | None
    cpu_seconds: float | None
    peak_memory_bytes: int | None
    wall_seconds: float | None


class StageDuration(_View):
    stage: str
    runs: int
    duration_ms: int
    status: str
    """The last run's status."""


class CriterionView(_View):
    name: str
    required: Any
    actual: Any
    passed: bool
    detail: str | None = None


class TaskDetail(_View):
    task_id: str
    title: str | None
    status: str
    branch: str | None
    attempts: int
    criteria: list[CriterionView]
    """The last verification round's result per criterion."""
    stages: list[StageDuration]
    usage: UsageView


class ErrorSummary(_View):
    error_id: str
    task_id: str | None
    stage: str
    classification: str
    message: str
    attempts: int
    created_at: str


class ControlActions(_View):
    pause: bool
    resume: bool
    stop: bool


class ExecutionDetail(_View):
    execution_id: str
    project_id: str
    customer_id: str
    user_id: str
    status: str
    progress: int
    current_task: str | None
    current_stage: str | None
    branch: str | None
    totals: Totals
    started_at: str
    updated_at: str
    actions: ControlActions
    tasks: list[TaskDetail]
    stages: list[StageDuration]
    """Every stage run of the execution, tasks' and between tasks (INIT, SELECT, FINALIZE)."""
    usage: UsageView
    errors: list[ErrorSummary]
    """Newest first, at most 200; ``errorCount`` counts them all."""
    error_count: int
    finished_at: str | None = None
    pause_reason: str | None = None
    stop_point: str | None = None


_USAGE = {"tokensSent": 4210, "tokensReceived": 388, "cost": 0.0123, "cpuSeconds": 3.2,
          "peakMemoryBytes": 73400320, "wallSeconds": 11.5}
EXAMPLE = {
    "executionId": "9b1d…", "projectId": "customer-123/project-abc", "customerId": "customer-123",
    "userId": "dana", "status": "completed", "progress": 100, "currentTask": None,
    "currentStage": "FINALIZE", "branch": None, "totals": {"completed": 1, "total": 1},
    "startedAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:03:00.000Z",
    "finishedAt": "2026-01-01T00:03:00.000Z", "pauseReason": None, "stopPoint": None,
    "actions": {"pause": False, "resume": False, "stop": False},
    "tasks": [{
        "taskId": "1.1", "title": "Add and subtract", "status": "done",
        "branch": "task/1-1-add-and-subtract", "attempts": 1,
        "criteria": [{"name": "tests", "required": "pass", "actual": "pass", "passed": True,
                      "detail": None}],
        "stages": [{"stage": "VERIFY", "runs": 1, "durationMs": 9000, "status": "succeeded"}],
        "usage": _USAGE,
    }],
    "stages": [{"stage": "VERIFY", "runs": 1, "durationMs": 9000, "status": "succeeded"}],
    "usage": _USAGE,
    "errors": [], "errorCount": 0,
}


@get(
    "/api/devteam/executions/{execution_id:uuid}",
    summary="One execution in detail: tasks, criteria, stage durations, usage, errors, actions",
    responses=docs(200, ExecutionDetail, EXAMPLE, 404),
    tags=["executions"],
)
async def execution_detail(
    request: Request[Any, Any, Any], execution_id: FromPath[uuid.UUID]
) -> Response[bytes]:
    principal = principal_of(request)
    async with store_of(request).snapshot() as tx:
        rows = await detail.read(tx, execution_id)
    if rows is None:
        raise Problem(404, "no such execution")
    require_read(principal, rows.execution.project_id)
    view = detail.assemble(rows)
    may_control = _may_control(principal, rows.execution.project_id)
    view["actions"] = {name: allowed and may_control
                       for name, allowed in view["actions"].items()}
    # Redacted when written; again here, with this gateway's credentials (messages,
    # criteria output and titles all came from a run).
    redacted = services_of(request).redactor.redact_obj(view)
    return respond(msgspec.convert(redacted, ExecutionDetail))


def _may_control(principal: Principal, project_id: str) -> bool:
    """Whether this token gets past the gate of pause/resume/stop (``require_write``)."""
    try:
        require_write(principal, project_id)
    except Problem:
        return False
    return True


handlers = [execution_detail]
