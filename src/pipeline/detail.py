"""One execution in detail (the dashboard's execution view): its tasks with status, branch,
attempts, criteria results, stage durations and usage; its error records; and the actions
its status allows now.

``read`` gathers the rows through the store port (``tx.executions.get`` and
``tx.details.of_execution``); everything else is pure, so the view's rules are unit-tested
without a database.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import msgspec

from pipeline.lifecycle import TRANSITIONS, Action, Status
from pipeline.store.details import ErrorRecord, StageRunUse
from pipeline.store.executions import ExecutionRow
from pipeline.store.port import Tx
from pipeline.store.usage import combine
from pipeline.stream import iso

CONTROL_ACTIONS = (Action.PAUSE, Action.RESUME, Action.STOP)
"""What a client may do to a running execution (initialize starts a new one)."""

class DetailRows(msgspec.Struct, frozen=True, kw_only=True):
    execution: ExecutionRow
    tasks: dict[str, Any]
    """The event's ``task_context.tasks``: what each stage said about its task."""
    runs: list[StageRunUse]
    errors: list[ErrorRecord]
    """Newest first, at most ``store.details.MAX_ERRORS``; ``error_count`` counts all."""
    error_count: int


async def read(tx: Tx, execution_id: uuid.UUID) -> DetailRows | None:
    """The rows behind one execution's detail, or None when there is no such execution."""
    execution = await tx.executions.get(execution_id)
    if execution is None:
        return None
    parts = await tx.details.of_execution(execution_id, execution.event_id)
    return DetailRows(execution=execution, tasks=parts.tasks, runs=parts.runs,
                      errors=parts.errors, error_count=parts.error_count)


# --------------------------------------------------------------------------- pure parts
def actions(status: str) -> dict[str, bool]:
    """``{pause, resume, stop}``: whether the lifecycle's transition table allows each from
    ``status`` (an unknown status allows none)."""
    try:
        current = Status(status)
    except ValueError:
        return {a.value: False for a in CONTROL_ACTIONS}
    return {a.value: current in TRANSITIONS[a][0] for a in CONTROL_ACTIONS}


def _stages(runs: list[StageRunUse]) -> list[dict[str, Any]]:
    """Per stage, in the order first run: how many runs, their summed duration, the last
    run's status."""
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        entry = out.setdefault(run.stage, {"stage": run.stage, "runs": 0, "durationMs": 0,
                                           "status": run.status})
        entry["runs"] += 1
        entry["durationMs"] += run.duration_ms or 0
        entry["status"] = run.status
    return list(out.values())


def _criteria(runs: list[StageRunUse]) -> list[dict[str, Any]]:
    """The last VERIFY round's result per criterion: required vs actual, passed."""
    for run in reversed(runs):
        if run.stage == "VERIFY" and run.criteria is not None:
            return [
                {"name": str(name), "required": r.get("required"), "actual": r.get("actual"),
                 "passed": bool(r.get("passed")), "detail": r.get("detail")}
                for name, r in run.criteria.items() if isinstance(r, dict)
            ]
    return []


def _is_task(task_id: str) -> bool:
    """Stage runs between tasks (INIT, SELECT ``#n``, FINALIZE) belong to no task."""
    return bool(task_id) and not task_id.startswith("#")


def _summary(value: Any) -> Mapping[str, Any]:
    """A task's summary from ``task_context`` (anything but an object reads as empty)."""
    return value if isinstance(value, dict) else {}


def _task(task_id: str, summary: Mapping[str, Any], runs: list[StageRunUse]) -> dict[str, Any]:
    attempts = max([r.attempt for r in runs if r.stage in ("IMPLEMENT", "VERIFY")], default=0)
    recorded = summary.get("attempts")
    if isinstance(recorded, int) and not isinstance(recorded, bool):
        attempts = max(attempts, recorded)
    status = summary.get("status")
    if not isinstance(status, str):
        status = "done" if any(r.stage == "DONE" and r.status == "succeeded" for r in runs) \
            else "in_progress"
    branch = summary.get("branch")
    title = summary.get("title")
    return {
        "taskId": task_id,
        "title": title if isinstance(title, str) else None,
        "status": status,
        "branch": branch if isinstance(branch, str) else None,
        "attempts": attempts,
        "criteria": _criteria(runs),
        "stages": _stages(runs),
        "usage": combine(r.usage for r in runs),
    }


def assemble(rows: DetailRows) -> dict[str, Any]:
    """The execution's detail in wire form (camelCase), from its rows. Error messages are
    as stored (redacted when written); the gateway redacts them again."""
    execution = rows.execution
    by_task: dict[str, list[StageRunUse]] = {}
    for run in rows.runs:
        if _is_task(run.task_id):
            by_task.setdefault(run.task_id, []).append(run)
    for task_id in rows.tasks:  # a task a stage spoke of without a run of its own
        if _is_task(task_id):
            by_task.setdefault(task_id, [])
    tasks = [_task(task_id, _summary(rows.tasks.get(task_id)), runs)
             for task_id, runs in by_task.items()]
    return {
        **execution.summary(),
        "actions": actions(execution.status),
        "tasks": tasks,
        "stages": _stages(rows.runs),
        "usage": combine(r.usage for r in rows.runs),
        "errors": [
            {"errorId": str(e.id), "taskId": e.task_id, "stage": e.stage,
             "classification": e.classification, "message": e.message,
             "attempts": e.attempts, "createdAt": iso(e.created_at)}
            for e in rows.errors
        ],
        "errorCount": rows.error_count,
    }


__all__ = ["DetailRows", "actions", "assemble", "read"]
